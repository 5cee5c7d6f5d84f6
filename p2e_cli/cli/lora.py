"""p2e lora: LoRA files: inspect, convert, import, mix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .. import console
from ..errors import P2EError
from ..registry import open_registry, validate_name
from . import mix

app = typer.Typer(name="lora", help="LoRA files: inspect, convert, import, mix.", no_args_is_help=True)


def compatibility(lora: Any, bases: list[Any]) -> list[dict[str, Any]]:
    """For each base record: does the LoRA fit it, and what would be skipped or is wrong."""
    from ..lora_io import check_against_base
    from ..wan import base_config, parameter_shapes

    report = []
    for base in bases:
        problems, skipped = check_against_base(lora, parameter_shapes(base_config(base)))
        report.append({"base": base.name, "compatible": not problems, "problems": problems[:20],
                       "n_problems": len(problems), "skipped": skipped})
    return report


def _print_inspect(info: dict[str, Any]) -> None:
    out = console.out
    out.print(f"[bold]{console.plain(info['path'])}[/bold]")
    out.print(f"format {info['format']}, {info['layers']} LoRA layers, rank {'/'.join(map(str, info['ranks']))}, "
              f"alpha {'/'.join(f'{a:g}' for a in info['alphas'])}, dtype {info['dtype']}")
    if info["module_types"]:
        out.print("module types: " + ", ".join(f"{k} x{v}" for k, v in info["module_types"].items()))
    for name, shape in info["diffs"].items():
        out.print(f"full delta: {name} {tuple(shape)}")
    if info["block_norms"]:
        out.print("‖ΔW‖ per block: " + "  ".join(f"{b}: {n:.4g}" for b, n in info["block_norms"].items()))
    for c in info["compatibility"]:
        if c["compatible"]:
            extra = f" (skips {len(c['skipped'])} image-projection layers)" if c["skipped"] else ""
            out.print(f"[green]fits base {c['base']}[/green]{extra}")
        else:
            out.print(f"[red]does not fit base {c['base']}[/red]: {'; '.join(c['problems'][:3])}"
                      + (f" (+{c['n_problems'] - 3} more)" if c["n_problems"] > 3 else ""))
    for key, value in sorted(info["metadata"].items()):
        out.print(f"[dim]{console.plain(key)}[/dim] = {console.plain(value if len(value) < 200 else value[:200] + '...')}")


@app.command("inspect")
def inspect(file: str = typer.Argument(..., help="LoRA .safetensors file, a registry LoRA id/name, or a library "
                                                   "effect's name (its newest reference LoRA on --base)."),
            base: Optional[str] = typer.Option(None, "--base", help="Check compatibility with this base only "
                                                                     "(default: every registered base; effect "
                                                                     "names mean the tiny world's references).")) -> None:
    """Show a LoRA file's format, ranks, alpha, layers, full deltas, metadata, per-block ‖ΔW‖ and base compatibility.

    Example: p2e lora inspect melt.safetensors --json
    """
    from ..lora_io import summary
    from ..render import resolve_lora
    from ..catalog import resolve_base

    reg = open_registry()
    resolved = resolve_lora(file, reg, lambda: resolve_base(base))
    bases = [resolve_base(base)] if base else reg.ls("base")
    info = {**summary(resolved.lora), "path": str(resolved.path), "sha256": resolved.sha256,
            "compatibility": compatibility(resolved.lora, bases)}
    console.result(info, lambda: _print_inspect(info))


@app.command("convert")
def convert(file: str = typer.Argument(..., help="LoRA .safetensors file in any layout p2e reads, a registry LoRA "
                                                   "id/name, or a library effect's name (its newest reference)."),
            to: str = typer.Option(..., "--to", help="Target layout: diffusers, wan, comfyui or musubi."),
            output: Path = typer.Option(..., "-o", "--output", help="Output .safetensors file."),
            base: Optional[str] = typer.Option(None, "--base", help="Base whose references effect names mean "
                                                                     "(default: the embedded tiny world).")) -> None:
    """Convert a LoRA between diffusers, wan, comfyui and musubi layouts (alpha and ΔW kept exactly).

    Example: p2e lora convert melt.safetensors --to comfyui -o melt_comfy.safetensors
    Example: p2e lora convert melt --to comfyui -o melt_comfy.safetensors
    """
    from ..catalog import resolve_base
    from ..lora_io import WRITE_FORMATS, convert_lora
    from ..render import LoraSpec, resolve_lora

    if to not in WRITE_FORMATS:
        raise P2EError(f"unknown layout {to!r}", hint=f"--to one of: {', '.join(WRITE_FORMATS)}")
    resolved = resolve_lora(LoraSpec(file, 1.0), open_registry(), lambda: resolve_base(base))
    if output.exists() and output.resolve() == resolved.path.resolve():
        raise P2EError("refusing to overwrite the input file", hint="give another -o")
    source_format = resolved.lora.format
    convert_lora(resolved.path, to, output)
    console.result({"input": str(file), "from": source_format, "to": to, "output": str(output)},
                   lambda: console.info(f"wrote {output} ({source_format} -> {to})"))


@app.command("import")
def import_(file: Optional[Path] = typer.Argument(None, help="LoRA .safetensors file (e.g. a community effect LoRA)."),
            name: Optional[str] = typer.Option(None, "--name", help="Registry name (default: the file's stem)."),
            effect: Optional[str] = typer.Option(None, "--effect", help="The effect it shows (an effect name)."),
            base: Optional[str] = typer.Option(None, "--base", help="Validate against this base and record it."),
            kind: str = typer.Option("imported", "--kind", help="imported, or reference (needs --effect)."),
            manifest: Optional[Path] = typer.Option(
                None, "--manifest", help='JSONL of community teachers, one {"id", "effect_prompt", "lora_path"} per '
                                         "line (paths relative to the manifest): each becomes a reference LoRA.")) -> None:
    """Register a LoRA file in the registry (validated, stored as is) as an imported or reference LoRA.

    Example: p2e lora import melt.safetensors --effect melt --kind reference --base wan21
    Example: p2e lora import --manifest teachers.jsonl --base wan21
    """
    from ..catalog import resolve_base
    from ..lora_store import import_lora

    reg = open_registry()
    base_record = resolve_base(base) if base else None
    if manifest is not None:
        if file is not None or name or effect:
            raise P2EError("--manifest names its files, LoRA names and effects itself",
                           hint="drop FILE/--name/--effect, or import one file without --manifest")
        entries = read_manifest(manifest, reg)
        records = [import_lora(reg, path, entry_id, entry_id, base_record, "reference", prompt)
                   for entry_id, prompt, path in entries]
        console.result([r.to_json() for r in records],
                       lambda: console.info(f"imported {len(records)} reference LoRA(s) from {manifest}"))
        return
    if file is None:
        raise P2EError("give a LoRA file, or --manifest FILE.jsonl")
    if kind not in ("imported", "reference"):
        raise P2EError(f"--kind must be imported or reference, not {kind!r}")
    if kind == "reference" and not effect:
        raise P2EError("a reference LoRA needs --effect NAME", hint="or import it with --kind imported")
    record = import_lora(reg, file, validate_name(name or _name_from(file)), effect, base_record, kind)
    console.result({**record.to_json(), "skipped": record.data["skipped"]},
                   lambda: console.info(f"imported {file} as {record.label} ({record.id}, {kind}, "
                                        f"{record.data['format']}, rank {record.data['rank']}, "
                                        f"{record.data['n_layers']} layers)"))


def read_manifest(manifest: Path, reg: Any) -> list[tuple[str, str, Path]]:
    """(id, effect prompt, LoRA path) of every manifest line, all problems reported at once."""
    import json

    from ..files import readable_file

    readable_file(manifest, "manifest")
    entries, problems, seen = [], [], set()
    for number, line in enumerate(manifest.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"line {number}: not JSON ({error.msg})")
            continue
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k].strip()
                                                for k in ("id", "effect_prompt", "lora_path")):
            problems.append(f'line {number}: needs string fields "id", "effect_prompt" and "lora_path"')
            continue
        try:
            entry_id = validate_name(row["id"], "id")
        except P2EError as error:
            problems.append(f"line {number}: {error.message}")
            continue
        path = Path(row["lora_path"])
        path = path if path.is_absolute() else manifest.parent / path
        if entry_id in seen or reg.find("lora", entry_id) is not None:
            problems.append(f"line {number}: a lora named {entry_id!r} already exists")
        elif not path.is_file():
            problems.append(f"line {number}: no such file {path}")
        seen.add(entry_id)
        entries.append((entry_id, row["effect_prompt"].strip(), path))
    if problems or not entries:
        raise P2EError(f"{manifest}: " + ("; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else "")
                                         if problems else "no entries"),
                       hint='each line: {"id": "melt", "effect_prompt": "melting into liquid", "lora_path": "melt.safetensors"}')
    return entries


def _name_from(file: Path) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_.+-]+", "-", file.stem).strip("-.") or "lora"
    return name[:100]


mix.register(app)
