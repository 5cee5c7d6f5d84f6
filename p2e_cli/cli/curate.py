"""p2e curate: effect clips: synthesize, add real clips, list, remove, export (encode comes with the bases)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console
from ..errors import P2EError

app = typer.Typer(name="curate", help="Effect clips: synthesize, add real clips, encode latents.", no_args_is_help=True)


def _names(values: List[str]) -> list[str]:
    """--effects melt,spin-cw --effects zoom-in -> [melt, spin-cw, zoom-in]."""
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


@app.command("synth")
def synth(effects: List[str] = typer.Option([], "--effects", help="Effect names, comma-separated (repeatable).",
                                           metavar="NAMES"),
          split: Optional[str] = typer.Option(None, "--split", help="All effects of a split: train (default) or heldout.",
                                              metavar="SPLIT"),
          clips_per_effect: int = typer.Option(8, "--clips-per-effect", "-n", help="Clips to render per effect."),
          frames: int = typer.Option(17, "--frames", help="Frames per clip (4k+1)."),
          size: str = typer.Option("64", "--size", help="Frame size: 64, or HEIGHTxWIDTH such as 48x80."),
          seed: int = typer.Option(0, "--seed", help="Seed: the same seed renders the same clips."),
          photos: str = typer.Option("train", "--photos", help="Photos to use: train (training clips) or heldout "
                                     "(validation clips).")) -> None:
    """Render procedural effect clips on random photo views into the registry (no duplicates).

    Example: p2e curate synth --split train --clips-per-effect 8
    """
    from .. import curate
    from ..registry import open_registry

    names = _names(effects)
    if names and split is not None:
        raise P2EError("give --effects or --split, not both")
    if split not in (None, "train", "heldout"):
        raise P2EError(f"unknown split {split!r}", hint="use --split train or --split heldout")
    selection = curate.select_effects(names, split or "train")
    shape = curate.parse_size(size)
    curate.check_frame_count(frames)
    reg = open_registry()
    with console.progress("synthesising clips", total=len(selection) * clips_per_effect) as advance:
        report = curate.synth(reg, selection, clips_per_effect, frames, shape, seed, photos, advance=advance)
    counts = report.to_json()["counts"]

    def human() -> None:
        console.out.print(f"added {counts['added']} clip(s), {counts['existing']} already present, for "
                          f"{len(selection)} effect(s) on {photos} photos ({frames}x{shape[0]}x{shape[1]}, seed {seed}) "
                          f"in {reg.home}")

    console.result({**report.to_json(), "effects": [e.name for e in selection], "photos": photos}, human)


@app.command("add")
def add(path: Path = typer.Argument(..., help="Folder of clip.mp4 + clip.txt pairs, or a JSONL manifest."),
        effect: str = typer.Option(..., "--effect", help="Effect the clips show (a library effect or a new name)."),
        fps: str = typer.Option("16", "--fps", help="Resample to this frame rate, or 'fit' to spread the whole clip "
                                "over --frames."),
        frames: int = typer.Option(17, "--frames", help="Longest clip kept (4k+1): the first frames at --fps."),
        size: str = typer.Option("64", "--size", help="Frame size after centre crop: 64, or HEIGHTxWIDTH."),
        heldout: bool = typer.Option(False, "--heldout", help="Validation clips: held out, never trained on.")) -> None:
    """Ingest real clips: validate, normalise (fps, 4k+1 frames, size, centre crop), dedupe.

    Example: p2e curate add ./melt_clips --effect melt --fps fit
    """
    from .. import curate
    from ..registry import open_registry

    if fps.strip().lower() == "fit":
        rate = None
    else:
        try:
            rate = float(fps)
        except ValueError:
            raise P2EError(f"bad --fps {fps!r}", hint="give a number such as 16, or 'fit'") from None
    shape = curate.parse_size(size)
    candidates = curate.find_candidates(path)
    reg = open_registry()
    with console.progress("adding clips", total=len(candidates)) as advance:
        report = curate.add_clips(reg, path, effect, rate, frames, shape, heldout, candidates=candidates, advance=advance)
    counts = report.to_json()["counts"]

    def human() -> None:
        console.out.print(f"added {counts['added']} clip(s) of {effect}, {counts['existing']} already present, "
                          f"skipped {counts['skipped']}")
        for record in report.added:
            console.out.print(f"  added {record.id}: {console.plain(Path(record.data['origin']).name)} "
                              f"({record.data['frames']} frames)")
        for skipped in report.skipped:
            console.out.print(f"  [yellow]skipped[/yellow] {console.plain(skipped['file'])}: {console.plain(skipped['reason'])}")

    console.result(report.to_json(), human)


@app.command("ls")
def ls(effect: Optional[str] = typer.Option(None, "--effect", help="Only clips of this effect."),
       photos: str = typer.Option("all", "--photos", help="Only clips on train or heldout photos (or all)."),
       source: Optional[str] = typer.Option(None, "--source", help="Only synth or real clips.")) -> None:
    """List curated clips with their effect, source, photo, size and caption.

    Example: p2e curate ls --effect melt --json
    """
    from .. import curate
    from ..registry import open_registry

    records = curate.list_clips(open_registry(), effect, photos, source)

    def human() -> None:
        if not records:
            console.info("no clips")
            return
        from rich.table import Table

        table = Table(title=f"{len(records)} clip(s)")
        for column in ("id", "effect", "source", "photo", "shape", "caption"):
            table.add_column(column)
        for r in records:
            d = r.data
            photo = d.get("photo") or Path(d.get("origin", "")).name
            table.add_row(r.id, d["effect"], d["source"], console.plain(f"{photo} ({d.get('photo_split')})"),
                          f"{d['frames']}x{d['height']}x{d['width']}", console.plain(d["caption"]))
        console.out.print(table)

    console.result([r.to_json() for r in records], human)


@app.command("rm")
def rm(refs: List[str] = typer.Argument(..., help="Clip ids (or prefixes), or effect names (all their clips)."),
       force: bool = typer.Option(False, "--force", help="Remove clips even when other records descend from them.")) -> None:
    """Remove clips by id, or all clips of an effect.

    Example: p2e curate rm melt
    """
    from .. import curate
    from ..registry import open_registry

    removed = curate.remove_clips(open_registry(), refs, force)
    console.result({"removed": [r.id for r in removed]}, lambda: console.info(f"removed {len(removed)} clip(s)"))


@app.command("export")
def export(effect: str = typer.Argument(..., help="Effect whose clips to write."),
           output: Path = typer.Option(..., "--output", "-o", help="Folder to write (created if missing)."),
           photos: str = typer.Option("train", "--photos", help="Clips on train photos (default), heldout, or all."),
           video_format: str = typer.Option("mp4", "--format", help="Video files: mp4, gif or webp.")) -> None:
    """Write an effect's clips in the Wan trainer layout: video + same-name .txt, and metadata.jsonl.

    Example: p2e curate export melt -o ./melt_clips
    """
    from .. import curate
    from ..registry import open_registry

    reg = open_registry()
    total = len(curate.list_clips(reg, effect, photos))
    with console.progress(f"exporting {effect}", total=total) as advance:
        rows = curate.export_clips(reg, effect, output, photos, video_format, advance=advance)
    console.result({"folder": str(output), "clips": rows},
                   lambda: console.info(f"wrote {len(rows)} clip(s) of {effect} to {output} (with metadata.jsonl)"))


@app.command("encode")
def encode(effect: Optional[str] = typer.Option(None, "--effect", help="Only this effect's clips."),
           base: Optional[str] = typer.Option(None, "--base", help="Base to encode for (default: tiny)."),
           photos: str = typer.Option("all", "--photos", help="Clips on train, heldout or all photos.")) -> None:
    """Cache VAE latents and prompt embeddings of clips for a base (training never re-encodes).

    Example: p2e curate encode --base tiny --effect melt
    """
    from ..curate import list_clips
    from ..encode import encode_clips
    from ..registry import open_registry
    from ..catalog import resolve_base

    reg = open_registry()
    record = resolve_base(base)
    report = encode_clips(reg, record, list_clips(reg, effect, photos))
    for clip, reason in report.skipped:
        console.warn(f"skipped clip {clip}: {reason}")
    console.result(report.to_json(), lambda: console.info(
        f"encoded {len(report.encoded)} clip(s) for {record.name or record.id}, {len(report.cached)} already cached, "
        f"{len(report.skipped)} skipped"))
