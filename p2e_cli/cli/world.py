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
          resume: bool = typer.Option(False, "--resume", help="Continue an interrupted build in the same folder, or add a later stage "
                                      "(decoder.*) to a finished one."),
          set_: List[str] = typer.Option([], "--set", help="Override a recipe key: --set transformer.steps=500."),
          register: bool = typer.Option(True, "--register/--no-register", help="Register the result as a base named after the world."),
          captions: Optional[Path] = typer.Option(None, "--captions", help="Caption embeddings from `p2e world captions`, for a "
                                                  "machine without the MiniLM package (a lent GPU)."),
          workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Processes drawing the training clips "
                                                "(default: up to 8 beside a GPU, none on a CPU-only machine).")) -> None:
    """Train a small Wan world (VAE + I2V transformer) on synthetic clips of photos and write a diffusers folder.
    Training runs on the GPU when there is one.

    Example: p2e world build world-micro -o ./micro

    More decoder training on a finished build (encoder, latents and LoRAs unchanged):
    p2e world build world-tiny -o DIR --resume --set decoder.base_dim=32

    On a GPU machine without MiniLM: here `p2e world captions world-tiny -o caps.safetensors`, there
    `p2e world build world-tiny -o DIR --captions caps.safetensors`, then here `p2e base add NAME --path DIR`.
    """
    from ..recipes import load_recipe
    from ..registry import open_registry
    from ..wan import describe_base
    from ..world.build import build_world
    from ..world.shipped import register_built

    config = load_recipe(recipe, set_, kind="world")
    reg = open_registry()
    target = out or reg.home / "worlds" / config.name
    path = build_world(config, target, resume=resume, captions_file=captions, workers=workers)
    linked = (path / "text_encoder").exists()
    record = register_built(reg, config.name, path) if register and linked else None
    data = record.data if record else describe_base(path) if linked else {}
    console.result({"path": str(path), "base": record.id if record else None, **data},
                   lambda: console.info(f"built world {config.name} at {path}"
                                        + (f", registered as base {config.name} ({record.id})" if record else "")
                                        + ("" if linked else "; no MiniLM here to link as its text encoder: copy the "
                                           "folder to a machine with p2e and run p2e base add NAME --path DIR")))


@app.command("captions")
def captions_(recipe: str = typer.Argument(..., help="World recipe: a file or a shipped name (world-tiny, world-micro)."),
              out: Path = typer.Option(..., "-o", "--out", help="Caption embeddings file to write (.safetensors)."),
              set_: List[str] = typer.Option([], "--set", help="The same recipe overrides as the build's.")) -> None:
    """Write the MiniLM embeddings of every caption a world build trains on, for `p2e world build --captions`
    on a machine without the MiniLM package (a lent GPU). Coded captions draw the corpus once to list them.

    Example: p2e world captions world-tiny -o caps.safetensors --set transformer.captions=coded
    """
    from ..files import check_output_path
    from ..recipes import load_recipe
    from ..world.build import write_caption_file

    config = load_recipe(recipe, set_, kind="world")
    table = write_caption_file(config, check_output_path(out))
    console.result({"path": str(out), "captions": len(table)},
                   lambda: console.info(f"wrote {len(table)} caption embeddings to {out}"))


@app.command("eval")
def eval_(base: Optional[str] = typer.Argument(None, help="Base to evaluate (default: tiny)."),
          sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a contact sheet of renders on held-out photos."),
          photos: int = typer.Option(4, "--photos", help="Held-out photos to render."),
          effects: int = typer.Option(12, "--effects", help="Train effects sampled for the effect-vs-neutral loss."),
          identify: bool = typer.Option(True, "--identify/--no-identify", help="Also round-trip every library effect "
                                        "through the VAE and identify the bare base's renders (a few minutes)."),
          out_json: Optional[Path] = typer.Option(None, "--report", help="Also write the full report as JSON here.")) -> None:
    """Print a world's quality figures on held-out photos: VAE PSNR (neutral and effect clips), first-frame PSNR,
    neutral vs effect loss, and whether the bare base performs effects by itself (effect identification).

    Example: p2e world eval tiny --sheet tiny.png
    """
    from ..catalog import resolve_base
    from ..world.quality import world_report

    record = resolve_base(base)
    report = world_report(record, photos=photos, effect_sample=effects, sheet=sheet, identify=identify)
    if out_json is not None:
        import json

        from ..files import atomic_write

        with atomic_write(out_json) as tmp:
            tmp.write_text(json.dumps(report, indent=2))

    def human() -> None:
        e = report["loss_effects_heldout"]
        console.out.print(f"world {record.name or record.id}, held-out photos only")
        console.out.print(f"  VAE reconstruction PSNR (neutral clips)  {report['vae_psnr_heldout_clips']:.2f} dB")
        if "vae_position_rmse" in report:
            console.out.print(f"  VAE position channels, RMS error         {report['vae_position_rmse']:.3f} (frame spans 2)")
        if identify:
            console.out.print(f"  VAE PSNR, every effect (median/p10/min)  {report['vae_psnr_effects_median']:.2f} / "
                              f"{report['vae_psnr_effects_p10']:.2f} / {report['vae_psnr_effects_min']:.2f} dB")
            console.out.print(f"  base renders identified as the effect    {report['ident_base']['rate']:.0%} "
                              "(top-1, each effect's prompt, no LoRA)")
        console.out.print(f"  rendered first frame vs input PSNR       {report['first_frame_psnr']:.2f} dB")
        console.out.print(f"  later frames vs input PSNR               {report['later_frames_psnr_vs_input']:.2f} dB")
        console.out.print(f"  base loss on neutral clips               {report['loss_neutral_heldout']:.4f}")
        console.out.print(f"  base loss on effect clips (median/min/max) {e['median']:.4f} / {e['min']:.4f} / {e['max']:.4f}")
        console.out.print(f"  effects whose loss exceeds neutral       {report['effects_above_neutral']:.0%}")

    console.result(report, human)


@app.command("ship")
def ship(base: str = typer.Argument("tiny", help="The world's base (its registry name is the shipped folder's name)."),
         library: bool = typer.Option(False, "--library", help="Pack the base's canonical reference library (fp16)."),
         hypernet: Optional[str] = typer.Option(None, "--hypernet", help="Registry hypernet (id or name) to ship (fp16)."),
         out: Optional[Path] = typer.Option(None, "-o", "--out", help="World folder to write into (default: the package's worlds/NAME).")) -> None:
    """Write a world's trained parts beside it for shipping: library.safetensors, hypernet.safetensors.

    A fresh install registers them with the world on first use (references, hypernet NAME). Maintainers run this after building the library / training the hypernetwork, then commit.

    Example: p2e world ship tiny --library --hypernet tiny-hypernet
    """
    import torch

    from ..errors import P2EError
    from ..hypernet.store import load_hypernet, save_hypernet
    from ..registry import open_registry
    from ..catalog import resolve_base
    from ..world.shipped import LIBRARY_FILE, pack_library, shipped_world

    if not library and hypernet is None:
        raise P2EError("nothing to ship", hint="pass --library and/or --hypernet ID")
    reg = open_registry()
    record = resolve_base(base)
    folder = out or shipped_world(record.name or "")
    if folder is None:
        raise P2EError(f"base {record.name or record.id} is not a shipped world", hint="pass -o WORLD_FOLDER")
    written = []
    if library:
        written.append(str(pack_library(reg, record, folder / LIBRARY_FILE)))
    if hypernet is not None:
        source = reg.get(hypernet, "hypernet")
        if source.data.get("layer_table") != record.data.get("layer_table"):
            raise P2EError(f"hypernet {source.label} was trained for another base than {record.name}")
        net, meta, embeddings = load_hypernet(reg.path(source.files["weights"]))
        written.append(str(save_hypernet(folder / "hypernet.safetensors", net, text_encoder=meta["text_encoder"],
                                         layer_table=meta["layer_table"], target=meta["target"],
                                         library=[tuple(x) for x in meta["library"]], library_embeddings=embeddings,
                                         dtype=torch.float16, metrics=meta.get("metrics"))))
    sizes = {path: Path(path).stat().st_size for path in written}
    console.result({"written": sizes}, lambda: [console.info(f"wrote {p} ({n / 2**20:.1f} MiB)") for p, n in sizes.items()])
