"""p2e render: render a Wan image-to-video clip, optionally with LoRAs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, List, Optional

import typer

from .. import console
from ..errors import P2EError

FORMATS = ("mp4", "gif", "webp", "png")


def render(
    image: Optional[Path] = typer.Argument(None, help="Input image (PNG, JPEG, ...). Not with --batch."),
    lora: List[str] = typer.Option([], "--lora", "-l", metavar="FILE[:SCALE]",
                                   help="LoRA file, registry id or library effect name (its newest reference on the base), with an optional scale (default 1); repeatable. "
                                        "On Wan2.2 A14B bases add @high or @low to load it into one expert only."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p",
                                         help="Text prompt (default: the LoRAs' effect prompts from their metadata)."),
    base: Optional[str] = typer.Option(None, "--base", "-b", help="Base name or id (default: tiny)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Number of frames, 4k+1 (default: the base's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the base's)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same frames."),
    size: Optional[str] = typer.Option(None, "--size", metavar="WxH", help="Output size (default: the base's)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Classifier-free guidance scale (1 = off)."),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="Negative prompt (used when guidance > 1)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help=".mp4, .gif, .webp or .png (contact sheet); with --batch, a folder. "
                                               "Default: the image's name with --format."),
    output_format: str = typer.Option("mp4", "--format", help="File type when the name is derived: mp4, gif, webp or png."),
    compare: bool = typer.Option(False, "--compare", help="Write one .png sheet: rows = no LoRA, then each LoRA alone, same seed."),
    batch: Optional[Path] = typer.Option(None, "--batch", help="Render every image in this folder."),
    preview: bool = typer.Option(False, "--preview", help="Also write LORA.webp beside each LoRA file (the sidecar preview LoRA managers show)."),
    fps: Optional[int] = typer.Option(None, "--fps", min=1, help="Frames per second of video outputs (default: the base's)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 (default), bfloat16 or float16 for the "
                                                              "transformers and text encoder; the VAE stays float32."),
) -> None:
    """Render a Wan image-to-video clip, optionally with LoRAs (applied as peft adapters).

    Example: p2e render img.png --lora melt.safetensors -o melt.mp4
    """
    from ..registry import open_registry
    from ..render import (RenderParams, Renderer, check_prompt, image_paths, lora_prompt, parse_dtype, parse_size,
                          record_render, resolve_lora)
    from ..video import read_image
    from ..catalog import resolve_base

    if prompt is not None:
        check_prompt(prompt)
    check_prompt(negative_prompt, "--negative-prompt")
    if output_format not in FORMATS:
        raise P2EError(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    if (image is None) == (batch is None):
        raise P2EError("give one IMAGE or --batch DIR", hint="e.g. p2e render img.png -o out.mp4")
    if (compare or preview) and not lora:
        raise P2EError(f"{'--compare' if compare else '--preview'} needs at least one --lora")
    images = image_paths(batch) if batch is not None else [image]
    for path in images:
        read_image(path)  # every input checked before any slow work
    reg = open_registry()
    record = resolve_base(base)
    loras = [resolve_lora(spec, reg, record) for spec in lora]
    jobs = _jobs(images, output, "png" if compare else output_format, batch is not None, compare, loras)

    renderer = Renderer(record, parse_dtype(dtype), device)
    for item in loras:
        renderer.check(item)
    params = renderer.resolve_params(RenderParams(
        prompt if prompt is not None else lora_prompt(loras), frames, steps, seed,
        parse_size(size) if size else None, guidance, negative_prompt))
    fps = fps or renderer.settings["fps"]
    results, previews = [], {}
    for job in jobs:
        start = time.perf_counter()
        clip, singles = job.run(renderer, params, fps)
        seconds = time.perf_counter() - start
        rec = record_render(reg, renderer, job.image, loras, params, job.output, seconds, compare)
        results.append({"render": rec.id, "image": str(job.image), "output": str(job.output), "seconds": round(seconds, 3)})
        console.info(f"wrote {job.output} ({params.frames} frames {params.size[0]}x{params.size[1]}, {seconds:.1f} s) "
                     f"render {rec.id}")
        if preview and not previews:
            previews = _previews(renderer, job, params, clip, singles, fps, reg)
    payload = {"base": renderer.name, **params.to_json(), "loras": [l.to_json() for l in loras], "renders": results,
               "previews": previews}

    def human() -> None:
        for path in previews.values():
            console.info(f"wrote preview {path}")

    console.result(payload, human)


def _jobs(images: list[Path], output: Path | None, suffix: str, batch: bool, compare: bool, loras: list[Any]) -> list[Any]:
    """Where each image's render goes: -o for one image; for a batch, -o is a folder (default ./renders)."""
    from ..files import check_output_path, write_failure
    from ..render import RenderJob

    if batch:
        folder = output or Path("renders")
        if folder.exists() and not folder.is_dir():
            raise P2EError(f"with --batch, -o names a folder; {folder} is a file")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_failure(str(folder), e) from e
        names = [p.stem for p in images]
        if len(set(names)) != len(names):
            raise P2EError(f"two images in {images[0].parent} share a name stem; their outputs would collide")
        return [RenderJob(p, folder / f"{p.stem}{'_compare' if compare else ''}.{suffix}", loras, compare) for p in images]
    image = images[0]
    target = output or Path(f"{image.stem}{'_compare' if compare else ''}.{suffix}")
    if compare and target.suffix.lower() != ".png":
        raise P2EError(f"--compare writes a .png contact sheet, not {target.suffix or 'a file without suffix'}",
                       hint=f"use -o {target.with_suffix('.png').name}")
    if target.suffix.lower() not in tuple(f".{f}" for f in FORMATS):
        raise P2EError(f"cannot write {target}: use .mp4, .gif, .webp or .png")
    return [RenderJob(image, check_output_path(target), loras, compare)]


def _previews(renderer: Any, job: Any, params: Any, clip: Any, singles: dict[str, Any], fps: int,
              reg: Any) -> dict[str, str]:
    """One preview per LoRA, each rendered with that LoRA alone (reusing compare rows or the main clip)."""
    from ..render import write_preview

    previews = {}
    loras = job.loras
    for item in loras:
        frames = singles.get(item.sha256)
        if frames is None:
            frames = clip if len(loras) == 1 else renderer.render(job.image, [item], params)
        previews[str(item.path)] = write_preview(item, frames, fps, reg)
    return previews


def register(app: typer.Typer) -> None:
    app.command("render")(render)
