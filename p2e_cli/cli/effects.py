"""p2e effects: the procedural effect library (exact ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console
from ..errors import P2EError

app = typer.Typer(name="effects", help="The procedural effect library (exact ground truth).", no_args_is_help=True)

SHOW_PHOTOS = ("astronaut", "chelsea", "hills", "coffee")  # three train photos and a held-out one


def _split_option(split: Optional[str]) -> str:
    if split not in (None, "train", "heldout"):
        raise P2EError(f"unknown split {split!r}", hint="use --split train or --split heldout")
    return split or "all"


@app.command("ls")
def ls(split: Optional[str] = typer.Option(None, "--split", help="Only train or heldout effects.", metavar="SPLIT"),
       family: Optional[str] = typer.Option(None, "--family", help="Only effects using this family (e.g. spin).")) -> None:
    """List effects with their family, split and canonical prompt.

    Example: p2e effects ls --split heldout --json
    """
    from ..effects import effects

    chosen = effects(_split_option(split), family)

    def human() -> None:
        from rich.table import Table

        table = Table(title=f"{len(chosen)} effects ({sum(e.split == 'heldout' for e in chosen)} held out)")
        for column in ("name", "family", "split", "prompt"):
            table.add_column(column)
        for e in chosen:
            table.add_row(e.name, e.family, e.split + (f" ({e.holdout})" if e.holdout else ""), e.caption)
        console.out.print(table)

    console.result([e.to_json() for e in chosen], human)


@app.command("show")
def show(name: str = typer.Argument(..., help="Effect name (see p2e effects ls)."),
         output: Optional[Path] = typer.Option(None, "--output", "-o",
                                               help="Write a contact sheet (.png) or the clip (.mp4/.gif/.webp)."),
         photo: List[str] = typer.Option([], "--photo", help="Photo(s) to apply it to (repeatable; default: four)."),
         size: int = typer.Option(64, "--size", help="Frame size in pixels."),
         frames: int = typer.Option(17, "--frames", help="Frames in the clip.")) -> None:
    """Show an effect's prompts, params, jitter and split; -o writes it applied to photos.

    Example: p2e effects show melt -o melt.png
    """
    from ..effects import get_effect, render, sheet
    from ..photos import load_photo, photo_info
    from ..video import write_image, write_video

    effect = get_effect(name)
    record = effect.to_json()
    if output is not None:
        photos = photo or list(SHOW_PHOTOS)
        for p in photos:
            photo_info(p)
        if output.suffix.lower() == ".png":
            labels = [f"{p} ({photo_info(p).split} photo)" for p in photos]
            write_image(sheet([(effect, p) for p in photos], labels, size=size, frames=frames), output)
        else:
            write_video(render(effect, load_photo(photos[0], size), frames), output)
        record["written"] = str(output)

    def human() -> None:
        console.out.print(f"[bold]{effect.name}[/bold]  family {effect.family}  split {effect.split}"
                          + (f" ({effect.holdout})" if effect.holdout else ""))
        console.out.print(f"params: {effect.params}")
        if effect.jitter:
            console.out.print("jitter: " + ", ".join(f"{k} {lo}..{hi}" for k, (lo, hi) in effect.jitter.items()))
        console.out.print("training prompts:" if effect.split == "train" else "prompts (the effect is held out: never trained on):")
        for p in effect.prompts:
            console.out.print(f"  {p}")
        console.out.print("held-out prompts:")
        for p in effect.heldout_prompts:
            console.out.print(f"  {p}")
        if output is not None:
            console.info(f"wrote {output}")

    console.result(record, human)


@app.command("sheet")
def sheet_command(output: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
                  split: Optional[str] = typer.Option(None, "--split", help="Only train or heldout effects.", metavar="SPLIT"),
                  family: Optional[str] = typer.Option(None, "--family", help="Only effects using this family."),
                  photo: str = typer.Option("astronaut", "--photo", help="The photo every effect is applied to."),
                  size: int = typer.Option(64, "--size", help="Frame size in pixels."),
                  panels: int = typer.Option(2, "--panels", min=1, max=8, help="Side-by-side columns of rows."),
                  compact: bool = typer.Option(False, "--compact", help="Quantise to 256 colours (a much smaller PNG).")) -> None:
    """Write one contact sheet of many effects on one photo: a labelled row per effect.

    Example: p2e effects sheet -o docs/effects.png --compact
    """
    from ..effects import effects, sheet
    from ..files import atomic_write, check_output_path
    from ..photos import photo_info

    photo_info(photo)
    chosen = effects(_split_option(split), family)
    if output.suffix.lower() != ".png":
        raise P2EError(f"cannot write {output}: the sheet is a PNG", hint="name it e.g. effects.png")
    check_output_path(output)
    labels = [e.name + (" (held out)" if e.split == "heldout" else "") for e in chosen]
    with console.progress("rendering effects", total=len(chosen)) as advance:
        image = sheet([(e, photo) for e in chosen], labels, size=size, panels=panels, advance=advance)
    from PIL import Image

    picture = Image.fromarray(image)
    if compact:
        picture = picture.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    with atomic_write(output) as tmp:
        picture.save(tmp, format="PNG", optimize=compact)
    console.result({"written": str(output), "effects": len(chosen), "photo": photo,
                    "width": image.shape[1], "height": image.shape[0]},
                   lambda: console.info(f"wrote {output}: {len(chosen)} effects on {photo}"))


@app.command("photo")
def photo(name: Optional[str] = typer.Argument(None, help="Photo name; omit to list them."),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="Image file to write (.png, .jpg)."),
          size: int = typer.Option(256, "--size", help="Side of the square image in pixels.")) -> None:
    """Write one of the built-in photos (e.g. as an input for p2e render), or list them with their split.

    Example: p2e effects photo coffee -o coffee.png
    """
    from ..photos import load_photo, photo_info, photo_names
    from ..video import write_image

    if name is None:
        rows = [{"name": n, "split": photo_info(n).split, "description": photo_info(n).description} for n in photo_names()]
        console.result(rows, lambda: [console.out.print(f"{r['name']:<12} {r['split']:<8} {r['description']}") for r in rows])
        return
    if name not in photo_names():
        raise P2EError(f"no built-in photo {name!r}", hint="list them with: p2e effects photo")
    if size < 16 or size > 4096:
        raise P2EError(f"--size must be between 16 and 4096, got {size}")
    path = write_image(load_photo(name, size), output or Path(f"{name}.png"))
    console.result({"photo": name, "output": str(path)}, lambda: console.info(f"wrote {path}"))
