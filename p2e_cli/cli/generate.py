"""p2e generate: write a LoRA from an effect prompt in one forward pass of the hypernetwork."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console
from ..errors import P2EError


def read_prompts(prompts: list[str], batch: Path | None) -> list[str]:
    """The prompts of the command line, then one per non-empty, non-# line of --batch."""
    from ..render import check_prompt

    out = [check_prompt(p, "a prompt").strip() for p in prompts or []]
    if batch is not None:
        from ..files import readable_file

        readable_file(batch, "--batch file")
        try:
            text = batch.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise P2EError(f"--batch file {batch} is not UTF-8 text (byte {e.start})",
                           hint="re-encode it as UTF-8, one prompt per line") from None
        out += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not out:
        raise P2EError("no prompt given", hint='p2e generate "melting into liquid" -o melt.safetensors, or --batch prompts.txt')
    empty = [i for i, p in enumerate(out) if not p]
    if empty:
        raise P2EError("an empty prompt was given", hint="every prompt needs words describing the effect")
    too_long = [p for p in out if len(p) > 1000]
    if too_long:
        raise P2EError(f"prompt of {len(too_long[0])} characters is too long (at most 1000): {too_long[0][:60]}...")
    return out


def generate(prompts: List[str] = typer.Argument(None, help="Effect prompt(s), e.g. \"melting into liquid\"."),
             output: Optional[Path] = typer.Option(None, "-o", "--output", help="LoRA file to write (one prompt)."),
             out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write one LoRA per prompt here (named after the prompt)."),
             base: Optional[str] = typer.Option(None, "--base", help="Base to generate for (default: the embedded tiny world)."),
             hypernet: Optional[str] = typer.Option(None, "--hypernet", help="Hypernetwork: registry id/name or .safetensors "
                                                                              "file (default: the newest one for the base)."),
             rank: Optional[int] = typer.Option(None, "--rank", help="Keep the top R singular directions (default: all)."),
             scale: float = typer.Option(1.0, "--scale", help="Multiply the update ΔW by this strength."),
             batch: Optional[Path] = typer.Option(None, "--batch", help="Text file with one prompt per line (# comments)."),
             register: bool = typer.Option(True, "--register/--no-register", help="Record each LoRA in the registry "
                                                                                   "as kind predicted."),
             precision: str = typer.Option("auto", "--precision", help="Compute in fp32 or bf16; auto: bf16 where the CPU "
                                                                       "has it in hardware (faster; ΔW within ~2% of fp32).")) -> None:
    """Write a LoRA from an effect prompt in one forward pass of the hypernetwork (many prompts run batched).

    Prints the library effects nearest to each prompt and the LoRA's size ‖ΔW‖ so you see what it resembles.

    Example: p2e generate "melting into liquid" -o melt.safetensors
    """
    import math
    import time

    from ..files import check_output_path
    from ..generation import generate_loras, open_generator, slug
    from ..registry import open_registry
    from ..catalog import resolve_base

    prompts = read_prompts(prompts, batch)
    if output is not None and len(prompts) > 1:
        raise P2EError(f"-o names one file but {len(prompts)} prompts were given", hint="use --out-dir DIR for several")
    if output is not None and out_dir is not None:
        raise P2EError("give -o FILE or --out-dir DIR, not both")
    if not math.isfinite(scale):
        raise P2EError(f"--scale must be a finite number, got {scale}")
    reg = open_registry()
    base_record = resolve_base(base)
    from ..catalog import resolve_hypernet

    path, record = resolve_hypernet(reg, hypernet, base_record)
    targets = [output] if output is not None else [out_dir / f"{slug(p)}.safetensors" for p in prompts] if out_dir else [None] * len(prompts)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        seen: dict[Path, int] = {}
        for i, t in enumerate(targets):  # two prompts with one slug get -2, -3, ...
            seen[t] = seen.get(t, 0) + 1
            if seen[t] > 1:
                targets[i] = t.with_name(f"{t.stem}-{seen[t]}{t.suffix}")
    for t in targets:
        if t is not None:
            check_output_path(t)
            if t.suffix != ".safetensors":  # refused before anything is generated or registered
                raise P2EError(f"LoRA files are .safetensors, not {t.suffix or 'extensionless'}: {t}")
    start = time.perf_counter()
    generator = open_generator(reg, base_record, path, precision)
    results = generate_loras(reg, generator, record, prompts, rank=rank, scale=scale, targets=targets, register=register)
    seconds = time.perf_counter() - start

    def show() -> None:
        for e in results:
            near = ", ".join(f"{n['effect']} {n['similarity']:.2f}" for n in e["nearest"])
            where = e["output"] or (f"lora {e['record']}" if e["record"] else "(not written)")
            console.out.print(f"{console.plain(e['prompt'])!s} -> {console.plain(where)}  ‖ΔW‖ {e['norm']:.3g}"
                              + (f"  nearest: {console.plain(near)}" if near else ""))
        which = f"{record.name or record.id}" if record is not None else str(path)
        console.info(f"{len(results)} LoRA(s) in {seconds:.2f} s (hypernetwork {which})")

    console.result(results, show)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
