"""p2e world: build and evaluate the embedded Wan worlds."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console
from .pending import placeholder

app = typer.Typer(name="world", help="The embedded Wan worlds: build one from a recipe, evaluate it.",
                  no_args_is_help=True)


@app.command("build")
def build(recipe: str = typer.Argument(..., help="World recipe: a file or a shipped name (world-tiny, world-micro)."),
          out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output folder (default: the registry's worlds/NAME)."),
          resume: bool = typer.Option(False, "--resume", help="Continue an interrupted build in the same folder."),
          set_: List[str] = typer.Option([], "--set", help="Override a recipe key: --set transformer.steps=500."),
          register: bool = typer.Option(True, "--register/--no-register", help="Register the result as a base named after the world.")) -> None:
    """Train a small Wan world (VAE + I2V transformer) on neutral-motion clips and write a diffusers folder.

    Example: p2e world build world-micro -o ./micro
    """
    from ..recipes import load_recipe
    from ..registry import open_registry
    from ..wan import describe_base
    from ..world.build import build_world

    config = load_recipe(recipe, set_, kind="world")
    reg = open_registry()
    target = out or reg.home / "worlds" / config.name
    target.mkdir(parents=True, exist_ok=True)
    path = build_world(config, target, resume=resume)
    data = describe_base(path)
    record = None
    if register:
        existing = reg.find("base", config.name)
        if existing is not None:
            reg.rm(existing.id, force=True)
        record = reg.add("base", name=config.name, data={**data, "world_recipe": config.name})
    console.result({"path": str(path), "base": record.id if record else None, **data},
                   lambda: console.info(f"built world {config.name} at {path}"
                                        + (f", registered as base {config.name} ({record.id})" if record else "")))


placeholder(app, "eval", "Print a world's quality figures: VAE PSNR, first-frame PSNR, neutral vs effect loss.",
            "p2e world eval tiny", "the embedded tiny world (issue 6)")
