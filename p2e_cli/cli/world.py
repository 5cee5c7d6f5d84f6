"""p2e world: build and evaluate the embedded Wan worlds."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console

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


@app.command("eval")
def eval_(base: Optional[str] = typer.Argument(None, help="Base to evaluate (default: tiny)."),
          sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a contact sheet of renders on held-out photos."),
          photos: int = typer.Option(4, "--photos", help="Held-out photos to render."),
          effects: int = typer.Option(12, "--effects", help="Train effects sampled for the effect-vs-neutral loss.")) -> None:
    """Print a world's quality figures on held-out photos: VAE PSNR, first-frame PSNR, neutral vs effect loss.

    Example: p2e world eval tiny --sheet tiny.png
    """
    from ..wan import resolve_base
    from ..world.quality import world_report

    record = resolve_base(base)
    report = world_report(record, photos=photos, effect_sample=effects, sheet=sheet)

    def human() -> None:
        e = report["loss_effects_heldout"]
        console.out.print(f"world {record.name or record.id}, held-out photos only")
        console.out.print(f"  VAE reconstruction PSNR (neutral clips)  {report['vae_psnr_heldout_clips']:.2f} dB")
        console.out.print(f"  rendered first frame vs input PSNR       {report['first_frame_psnr']:.2f} dB")
        console.out.print(f"  later frames vs input PSNR               {report['later_frames_psnr_vs_input']:.2f} dB")
        console.out.print(f"  base loss on neutral clips               {report['loss_neutral_heldout']:.4f}")
        console.out.print(f"  base loss on effect clips (median/min/max) {e['median']:.4f} / {e['min']:.4f} / {e['max']:.4f}")
        console.out.print(f"  effects whose loss exceeds neutral       {report['effects_above_neutral']:.0%}")

    console.result(report, human)
