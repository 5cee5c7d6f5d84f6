"""p2e canon: rewrite LoRAs in SVD-canonical form."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer

from .. import console
from ..errors import P2EError

if TYPE_CHECKING:
    from ..registry import Record, Registry
    from ..render import ResolvedLora


def canonical_child(reg: Registry, record: Record) -> Record | None:
    """The canonical LoRA already made from a registry LoRA, if any."""
    for child_id in reg.children(record.id):
        child = reg.get(child_id)
        if child.kind == "lora" and child.subkind == "canonical":
            return child
    return None


def default_output(path: Path) -> Path:
    """melt.safetensors -> melt.canonical.safetensors, beside it."""
    return path.with_name(f"{path.stem}.canonical.safetensors")


def _write(lora: Any, path: Path, source: ResolvedLora, parents: list[str]) -> None:
    from ..lora_io import WRITE_FORMATS, write_lora

    fmt = source.lora.format if source.lora.format in WRITE_FORMATS else "diffusers"
    write_lora(path, lora, fmt=fmt, kind="canonical", parents=parents,
               description=f"p2e canonical (SVD) form of {source.path.name}")


def canonicalize_one(reg: Registry, source: ResolvedLora, output: Path | None) -> dict[str, Any]:
    """Canonicalize one resolved LoRA: a registry LoRA gets a canonical child record (reused when it
    exists, so reruns add nothing); a file gets OUTPUT or NAME.canonical.safetensors."""
    from ..canon import canonical_lora
    from ..files import atomic_write, check_output_path

    record = source.record
    entry: dict[str, Any] = {"source": source.spec.source, "source_record": record.id if record else None,
                             "record": None, "output": None}
    if record is not None:
        existing = record if record.subkind == "canonical" else canonical_child(reg, record)
        if existing is not None:
            entry.update(record=existing.id, name=existing.name, status="exists")
            if output is not None:
                check_output_path(output)
                with atomic_write(output) as tmp:
                    tmp.write_bytes(reg.path(existing.files["lora"]).read_bytes())
                entry["output"] = str(output)
            return entry
    canonical = canonical_lora(source.lora)
    entry.update(layers=len(canonical.layers), rank=canonical.rank, status="created")
    if record is None:
        target = output or default_output(source.path)
        if target.resolve() == source.path.resolve():
            raise P2EError(f"refusing to overwrite the input file {source.path}", hint="give another -o")
        _write(canonical, target, source, [])
        entry["output"] = str(target)
        return entry
    with reg.artifact(".safetensors") as pending:
        _write(canonical, pending.path, source, [record.id])
    data = {**record.data, "format": canonical.format, "rank": canonical.rank, "alpha": canonical.alpha,
            "ranks": canonical.ranks, "n_layers": len(canonical.layers), "canonical_of": record.id}
    name = f"{record.name}.canonical"[:100] if record.name else None
    child = reg.add("lora", name=name, key=f"canonical:{record.id}:{source.sha256}", subkind="canonical", data=data,
                    parents=[record.id], files={"lora": pending.ref})
    entry.update(record=child.id, name=child.name)
    if output is not None:
        _write(canonical, check_output_path(output), source, [record.id])
        entry["output"] = str(output)
    return entry


def _print(entries: list[dict[str, Any]]) -> None:
    if not entries:
        console.info("nothing to do: every reference LoRA already has a canonical form")
    for e in entries:
        where = ", ".join(x for x in (f"lora {e['name'] or e['record']}" if e["record"] else "",
                                      e["output"] or "") if x)
        if e["status"] == "exists":
            console.info(f"{e['source']}: already canonical -> {where}")
        else:
            console.info(f"{e['source']}: canonical -> {where} ({e['layers']} layers, rank {e['rank']})")


def canon(loras: Optional[List[str]] = typer.Argument(None, metavar="LORA",
                                                      help="LoRA .safetensors files or registry LoRA ids/names."),
          all_: bool = typer.Option(False, "--all", help="Every reference LoRA in the registry that has no canonical form yet."),
          output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                help="Output file (one LoRA only). Default: registry LoRAs stay in the "
                                                     "registry; a file F.safetensors gives F.canonical.safetensors.")) -> None:
    """Rewrite LoRAs in SVD-canonical form: ΔW = U S Vᵀ, B = U S^½, A = S^½ Vᵀ, alpha = rank, signs fixed.

    Registry LoRAs get a `canonical` child record (the source is its parent); running it again adds nothing; a LoRA already canonical comes back bit-identical. The math runs in float64 without forming ΔW; files are float32, so ΔW changes only by float32 rounding (~1e-7).

    --all also registers the reference library shipped with a world (tiny), the first time.

    Example: p2e canon --all
    """
    from ..registry import open_registry
    from ..render import LoraSpec, parse_lora_spec, resolve_lora

    if not loras and not all_:
        raise P2EError("no LoRA given", hint="give LoRA files or registry ids, or --all for every reference LoRA")
    if loras and all_:
        raise P2EError("give LoRAs or --all, not both")
    reg = open_registry()
    if all_:
        from ..world.shipped import install_shipped_library

        for base in reg.ls("base"):  # a shipped world's library joins the references on first need
            install_shipped_library(reg, base)
        specs = [LoraSpec(f"lora:{r.id}") for r in reg.ls("lora", "reference") if canonical_child(reg, r) is None]
    else:
        specs = [parse_lora_spec(text) for text in loras]
    for spec in specs:
        if spec.scale != 1.0 or spec.expert != "both":
            raise P2EError(f"{spec.source}: canon takes no :SCALE or @expert suffix")
    if output is not None and len(specs) != 1:
        raise P2EError(f"-o names one output file, but {len(specs)} LoRAs were given", hint="drop -o, or canonicalize one LoRA")
    # one at a time: a 14B LoRA is ~1 GB in memory
    entries = [canonicalize_one(reg, resolve_lora(spec, reg), output) for spec in console.track(specs, "canonicalizing")]
    console.result(entries, lambda: _print(entries))


def register(app: typer.Typer) -> None:
    app.command("canon")(canon)
