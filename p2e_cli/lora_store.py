"""LoRA files become registry records: import a file (validated, stored as is) and canonicalize a
LoRA (its SVD form, as a child record or a file). The library code behind `p2e lora import` and
`p2e canon`; every record goes through `records.register_lora`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import console
from .errors import P2EError
from .records import LoraData, register_lora
from .registry import Record, Registry

if TYPE_CHECKING:
    from .render import ResolvedLora


def import_lora(reg: Registry, file: Path, name: str, effect: str | None, base: Record | None, kind: str,
                prompt: str | None = None) -> Record:
    """Validate a LoRA file (and its fit to `base`, when given), store it and register it."""
    from .curate import real_effect_record
    from .files import readable_file
    from .lora_io import fit_to_base, read_lora
    from .wan import base_config, parameter_shapes

    readable_file(file, "LoRA file")
    lora = read_lora(file)
    if reg.find("lora", name) is not None:  # checked before storing the file, so a refusal leaves no orphan
        raise P2EError(f"a lora named {name!r} already exists",
                       hint=f"choose another --name, or remove it first: p2e rm lora:{name}")
    parents, skipped = [], []
    if base is not None:
        _, skipped = fit_to_base(lora, parameter_shapes(base_config(base)), what=f"base {base.name}")
        parents.append(base.id)
        if skipped:
            console.warn(f"base {base.name} has no image projections: {len(skipped)} layer(s) will be skipped when rendering")
    if effect:
        if prompt is not None:  # a manifest's effect is new unless it names a library effect
            parents.append(real_effect_record(reg, effect).id)
        elif (effect_record := reg.find("effect", effect)) is not None:
            parents.append(effect_record.id)
        else:
            console.warn(f"effect {effect!r} is not in the registry; recorded by name only")
    with reg.artifact(".safetensors") as pending:
        pending.path.write_bytes(file.read_bytes())
    data = LoraData.on(base, lora.rank, lora.alpha, effect=effect,
                       prompt=prompt or lora.p2e("prompt") or lora.metadata.get("modelspec.trigger_phrase"),
                       source=str(file.resolve()), format=lora.format, ranks=lora.ranks, n_layers=len(lora.layers),
                       diffs=sorted(lora.diffs), skipped=skipped)
    return register_lora(reg, data, pending.ref, subkind=kind, name=name, parents=parents)


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
    from .lora_io import WRITE_FORMATS, write_lora

    fmt = source.lora.format if source.lora.format in WRITE_FORMATS else "diffusers"
    write_lora(path, lora, fmt=fmt, kind="canonical", parents=parents,
               description=f"p2e canonical (SVD) form of {source.path.name}")


def canonicalize_one(reg: Registry, source: ResolvedLora, output: Path | None) -> dict[str, Any]:
    """Canonicalize one resolved LoRA: a registry LoRA gets a canonical child record (reused when it
    exists, so reruns add nothing); a file gets OUTPUT or NAME.canonical.safetensors."""
    from .canon import canonical_lora
    from .files import atomic_write, check_output_path

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
    parent = LoraData.of(record)
    data = dataclasses.replace(parent, rank=canonical.rank, alpha=canonical.alpha, extra={
        **parent.extra, "format": canonical.format, "ranks": canonical.ranks, "n_layers": len(canonical.layers),
        "canonical_of": record.id})
    name = f"{record.name}.canonical"[:100] if record.name else None
    child = register_lora(reg, data, pending.ref, subkind="canonical", name=name,
                          key=f"canonical:{record.id}:{source.sha256}", parents=[record.id])
    entry.update(record=child.id, name=child.name)
    if output is not None:
        _write(canonical, check_output_path(output), source, [record.id])
        entry["output"] = str(output)
    return entry


def uncanonical_references(reg: Registry, base: Record | None = None) -> list[Record]:
    """Reference LoRAs (of `base`, or of every base) with no canonical form yet, once each shipped world's
    library is registered (it joins the references on first need)."""
    from .records import is_on
    from .world.shipped import install_shipped_library

    for each in [base] if base is not None else reg.ls("base"):
        install_shipped_library(reg, each)
    return [r for r in reg.ls("lora", "reference")
            if (base is None or is_on(r, base)) and canonical_child(reg, r) is None]


def canonicalize_references(reg: Registry, base: Record) -> list[dict[str, Any]]:
    """Canonicalize every reference LoRA of `base` that has no canonical form yet: what `p2e canon --all`
    does, for one base (seconds on the tiny world)."""
    from .render import LoraSpec, resolve_lora

    todo = uncanonical_references(reg, base)
    if todo:
        console.info(f"canonicalizing {len(todo)} reference LoRA(s) of base {base.name or base.id} first (p2e canon --all)")
    return [canonicalize_one(reg, resolve_lora(LoraSpec(f"lora:{r.id}"), reg), None) for r in console.track(todo, "canonicalizing")]
