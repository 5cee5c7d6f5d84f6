"""p2e lora mix: blend LoRAs into one canonical LoRA (the `lora` group registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from .. import console
from ..errors import P2EError

SHARED_METADATA = ("p2e.base", "p2e.layer_table", "p2e.family")


def mix(loras: List[str] = typer.Argument(..., metavar="LORA:WEIGHT",
                                          help="LoRA files, registry ids or library effect names (their newest "
                                               "reference), each with a weight (default 1)."),
        rank: Optional[int] = typer.Option(None, "--rank", "-r", min=1,
                                           help="Rank of the result (default: the largest input rank). The sum of "
                                                "the input ranks keeps the mix exact."),
        output: Path = typer.Option(..., "-o", "--output", help="Output .safetensors file."),
        base: Optional[str] = typer.Option(None, "--base", help="Base whose references effect names mean "
                                                                 "(default: the embedded tiny world).")) -> None:
    """Blend LoRAs: Σ wᵢ·ΔWᵢ re-factored to rank R by SVD (best rank-R fit), written canonical.

    Example: p2e lora mix melt.safetensors:0.6 spin.safetensors:0.4 --rank 16 -o melt_spin.safetensors
    Example: p2e lora mix melt:0.5 spin-cw:0.5 -o melt_spin.safetensors
    """
    from ..canon import mix_loras
    from ..catalog import resolve_base
    from ..files import check_output_path
    from ..lora_io import write_lora
    from ..registry import open_registry
    from ..render import lora_prompt, parse_lora_spec, resolve_lora

    check_output_path(output)
    specs = [parse_lora_spec(text) for text in loras]
    for spec in specs:
        if spec.expert != "both":
            raise P2EError(f"{spec.source}@{spec.expert}: mix takes LORA:WEIGHT, no @expert suffix")
    reg = open_registry()
    sources = [resolve_lora(spec, reg, lambda: resolve_base(base)) for spec in specs]
    if any(output.exists() and output.resolve() == s.path.resolve() for s in sources):
        raise P2EError("refusing to overwrite an input file", hint="give another -o")
    mixed, stats = mix_loras([(s.lora, s.spec.scale) for s in sources], rank)
    for key in SHARED_METADATA:
        values = {s.lora.metadata.get(key) for s in sources}
        if len(values) == 1 and None not in values:
            mixed.metadata[key] = values.pop()
    recipe = " + ".join(f"{s.spec.scale:g}·{s.label.rsplit(':', 1)[0]}" for s in sources)
    write_lora(output, mixed, kind="canonical", prompt=lora_prompt(sources) or None,
               parents=[s.record.id for s in sources if s.record is not None], description=f"p2e mix: {recipe}")
    result: dict[str, Any] = {"output": str(output), "layers": len(mixed.layers), "alpha": float(stats["rank"]),
                              "inputs": [{**s.to_json(), "weight": s.spec.scale} for s in sources], **stats}
    console.result(result, lambda: console.info(
        f"wrote {output}: {recipe} at rank {stats['rank']}, {len(mixed.layers)} layers, "
        f"{100 * stats['kept_energy']:.2f}% of the mix's energy kept (worst layer {100 * stats['min_layer_kept_energy']:.2f}%)"))


def register(app: typer.Typer) -> None:
    """Add `mix` to a command group (p2e lora)."""
    app.command("mix")(mix)
