"""Effect clips in the registry: synthesised from the procedural library, or added from real videos.

A clip is a `clip` record whose `frames` file is a safetensors holding one uint8 tensor "frames"
shaped (T, H, W, 3), stored losslessly; its parent is the `effect` record. The record's id is
derived from a hash of the frames, so adding the same clip twice yields one record. Its data:

    effect, caption, source ("synth" | "real"), frames, height, width, fps, hash,
    photo_split ("train" | "heldout": trainers use only "train"; "heldout" clips are for validation),
    effect_split, and for synthetic clips photo, params (exact ground truth), seed, view_seed,
    caption_split; for real clips origin (the file it came from).

Trainers use `list_clips` and `load_clip`; the CLI (`p2e curate`) is a thin layer over this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from . import effects as fx
from .errors import P2EError
from .files import atomic_write, write_failure
from .photos import photo_names, random_view
from .registry import Record, Registry, validate_name

CLIP_TENSOR = "frames"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".webp")
MIN_FRAMES = 5  # the shortest 4k+1 clip with motion (k = 1)
MIN_SIDE = 16
DEFAULT_FPS = 16.0  # Wan's frame rate
SYNTH_FPS = 8.0  # nominal rate of synthetic clips (an effect spans its whole clip)
Progress = Callable[..., None]


def check_frame_count(frames: int) -> int:
    """Wan's VAE compresses time 4x after the first frame, so clips have 4k+1 frames."""
    if frames < MIN_FRAMES or (frames - 1) % 4:
        raise P2EError(f"clips need 4k+1 frames (5, 9, 13, 17, ...), got {frames}",
                       hint="Wan's VAE encodes the first frame alone, then groups of 4")
    return frames


def parse_size(size: str | int | tuple[int, int]) -> tuple[int, int]:
    """"64" -> (64, 64); "48x80" -> (48, 80) as (height, width); sides 16..1024, multiples of 8."""
    if isinstance(size, tuple):
        h, w = size
    else:
        text = str(size).lower().strip()
        try:
            h, w = (int(text), int(text)) if "x" not in text else map(int, text.split("x", 1))
        except ValueError:
            raise P2EError(f"bad size {size!r}", hint="give one side (64) or HEIGHTxWIDTH (48x80)") from None
    if not (MIN_SIDE <= h <= 1024 and MIN_SIDE <= w <= 1024) or h % 8 or w % 8:
        raise P2EError(f"bad size {h}x{w}", hint="sides must be 16 to 1024 pixels and multiples of 8")
    return h, w


def frames_hash(frames: np.ndarray) -> str:
    """The content hash of a clip: sha256 of its shape and uint8 bytes."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    h = hashlib.sha256(str(frames.shape).encode())
    h.update(frames.tobytes())
    return h.hexdigest()


# -- records ----------------------------------------------------------------------------------

def effect_record(reg: Registry, effect: str | fx.Effect) -> Record:
    """The `effect` record of a library effect, created on first use (kept in step with the library)."""
    effect = fx.get_effect(effect)
    data = {**effect.to_json(), "source": "procedural"}
    existing = reg.find("effect", effect.name)
    if existing is None:
        return reg.add("effect", name=effect.name, key=f"effect:{effect.name}", data=data)
    if existing.data != data:
        return reg.update(existing.id, data=data)
    return existing


def real_effect_record(reg: Registry, name: str) -> Record:
    """The `effect` record for clips added from videos: a library effect, or a new named effect."""
    try:
        return effect_record(reg, name)
    except P2EError:
        pass
    existing = reg.find("effect", name)
    if existing is not None:
        return existing
    return reg.add("effect", name=name, key=f"effect:{name}",
                   data={"name": name, "family": None, "split": "train", "source": "real"})


def _store_clip(reg: Registry, frames: np.ndarray, digest: str, data: dict[str, Any], parent: str) -> Record:
    from safetensors.numpy import save_file

    metadata = {"format": "p2e-clip", "layout": "THWC uint8", "effect": str(data["effect"]),
                "caption": str(data["caption"])}
    with reg.artifact(".safetensors") as pending:
        save_file({CLIP_TENSOR: np.ascontiguousarray(frames, dtype=np.uint8)}, pending.path, metadata=metadata)
    return reg.add("clip", key=digest, data={**data, "hash": digest}, parents=[parent], files={"frames": pending.ref})


def _clip_hashes(reg: Registry) -> dict[str, str]:
    return {r.data.get("hash"): r.id for r in reg.ls("clip")}


def list_clips(reg: Registry, effect: str | None = None, photos: str = "all", source: str | None = None) -> list[Record]:
    """Clip records, oldest first: of one effect, on "train" / "heldout" / "all" photos (real clips
    count as train unless added as held out), from one source ("synth" | "real")."""
    if photos not in ("train", "heldout", "all"):
        raise P2EError(f"unknown photo split {photos!r}", hint="use train, heldout or all")
    if source not in (None, "synth", "real"):
        raise P2EError(f"unknown clip source {source!r}", hint="use synth or real")
    if effect is not None:
        parent = reg.find("effect", effect)
        if parent is None:
            raise P2EError(f"no effect {effect!r} in the registry",
                           hint="make clips first: p2e curate synth --effects NAME, or p2e curate add DIR --effect NAME")
        records = [reg.get(i) for i in reg.children(parent.id)]
        records = sorted((r for r in records if r.kind == "clip"), key=lambda r: (r.created, r.id))
    else:
        records = reg.ls("clip")
    return [r for r in records
            if (photos == "all" or r.data.get("photo_split") == photos) and (source is None or r.data.get("source") == source)]


def load_clip(reg: Registry, clip: Record | str) -> np.ndarray:
    """A clip's frames: (T, H, W, 3) uint8."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    record = clip if isinstance(clip, Record) else reg.get(clip, "clip")
    if record.kind != "clip" or "frames" not in record.files:
        raise P2EError(f"{record.label} is not a clip with frames")
    path = reg.path(record.files["frames"])
    try:
        frames = load_file(path)[CLIP_TENSOR]
    except (OSError, SafetensorError, KeyError) as e:
        raise P2EError(f"cannot read the frames of clip {record.id} ({path}): {e}",
                       hint="check the registry with: p2e doctor") from e
    return np.asarray(frames, dtype=np.uint8)


def remove_clips(reg: Registry, refs: Iterable[str], force: bool = False) -> list[Record]:
    """Remove clips named by id (prefix) or, for an effect name, all that effect's clips. A clip
    that other records descend from (e.g. a LoRA trained on it) is kept unless `force`."""
    targets: dict[str, None] = {}
    for ref in refs:
        effect = reg.find("effect", ref)
        if effect is not None:
            targets.update(dict.fromkeys(r.id for r in list_clips(reg, effect=ref)))
        else:
            targets[reg.get(ref, "clip").id] = None
    return [reg.rm(clip_id, force=force) for clip_id in targets]


# -- synth ------------------------------------------------------------------------------------------

@dataclass
class SynthReport:
    added: list[Record] = field(default_factory=list)
    existing: list[Record] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"added": [r.id for r in self.added], "existing": [r.id for r in self.existing],
                "counts": {"added": len(self.added), "existing": len(self.existing)}}


def select_effects(names: Iterable[str] | None = None, split: str = "train") -> list[fx.Effect]:
    """Effects by name (all of them validated first), else every effect of a split."""
    if names:
        return [fx.get_effect(n) for n in dict.fromkeys(names)]
    return fx.effects(split)


def synth_clip(effect: fx.Effect, index: int, seed: int, frames: int = 17, size: tuple[int, int] = (64, 64),
               photos: str = "train") -> tuple[np.ndarray, dict[str, Any]]:
    """Clip `index` of an effect: a random photo of the split ("train" | "heldout"), a random view
    of it, jittered params, a training paraphrase. Deterministic in (effect name, index, seed, frames, size, photos), and
    independent of which other effects are synthesised in the same run."""
    rng = np.random.default_rng([seed, zlib.crc32(effect.name.encode()), index])
    photo = str(rng.choice(photo_names(photos)))
    view_seed = int(rng.integers(2 ** 31))
    params = fx.sample_params(effect, rng)
    caption = str(rng.choice(effect.prompts))
    clip = fx.render(effect, random_view(photo, size, view_seed), frames, params)
    data = {"effect": effect.name, "caption": caption, "caption_split": "train", "source": "synth",
            "photo": photo, "photo_split": photos,
            "effect_split": effect.split, "params": params, "seed": seed, "index": index, "view_seed": view_seed,
            "frames": frames, "height": size[0], "width": size[1], "fps": SYNTH_FPS}
    return clip, data


def synth(reg: Registry, selection: list[fx.Effect], clips_per_effect: int = 8, frames: int = 17,
          size: tuple[int, int] = (64, 64), seed: int = 0, photos: str = "train",
          advance: Progress | None = None) -> SynthReport:
    """Render `clips_per_effect` clips of each effect into the registry (see `synth_clip`).
    Clips already present (same frames) are reported as existing, not duplicated."""
    check_frame_count(frames)
    if clips_per_effect < 1:
        raise P2EError(f"--clips-per-effect must be at least 1, got {clips_per_effect}")
    if photos not in ("train", "heldout"):
        raise P2EError(f"unknown photo split {photos!r}", hint="use train (training clips) or heldout (validation clips)")
    known = _clip_hashes(reg)
    report = SynthReport()
    for effect in selection:
        parent = effect_record(reg, effect)
        for index in range(clips_per_effect):
            clip, data = synth_clip(effect, index, seed, frames, size, photos)
            digest = frames_hash(clip)
            if digest in known:
                report.existing.append(reg.get(known[digest], "clip"))
            else:
                record = _store_clip(reg, clip, digest, data, parent.id)
                known[digest] = record.id
                report.added.append(record)
            if advance:
                advance()
    return report


# -- add real clips -----------------------------------------------------------------------------

@dataclass
class AddReport:
    added: list[Record] = field(default_factory=list)
    existing: list[Record] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"file", "reason"}

    def to_json(self) -> dict[str, Any]:
        return {"added": [r.id for r in self.added], "existing": [r.id for r in self.existing], "skipped": self.skipped,
                "counts": {"added": len(self.added), "existing": len(self.existing), "skipped": len(self.skipped)}}


@dataclass
class Candidate:
    video: Path | None
    caption: str | None
    label: str  # how to name it in the report (a file, or "manifest.jsonl line 3")
    problem: str | None = None


def _folder_candidates(folder: Path) -> list[Candidate]:
    """Videos paired with same-name .txt captions (the layout Wan trainers use)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    stems = {p.stem for p in videos}
    out = []
    for video in videos:
        text = video.with_suffix(".txt")
        if not text.is_file():
            out.append(Candidate(video, None, video.name, f"no caption: expected {text.name} beside it"))
            continue
        try:
            caption = text.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            out.append(Candidate(video, None, video.name, f"unreadable caption {text.name}: {e}"))
            continue
        out.append(Candidate(video, caption, video.name, None if caption else f"empty caption in {text.name}"))
    out += [Candidate(None, None, p.name, "caption without a video of the same name")
            for p in files if p.suffix.lower() == ".txt" and p.stem not in stems]
    return out


def _manifest_candidates(manifest: Path) -> list[Candidate]:
    """A JSONL file: one {"video": path, "caption": text} per line, paths relative to the file."""
    out = []
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise P2EError(f"cannot read manifest {manifest}: {e}") from e
    for number, line in enumerate(lines, start=1):
        label = f"{manifest.name} line {number}"
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            out.append(Candidate(None, None, label, f"not JSON: {e.msg}"))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("video"), str):
            out.append(Candidate(None, None, label, 'needs a "video" path'))
            continue
        video = (manifest.parent / entry["video"]).expanduser()
        caption = entry.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            out.append(Candidate(video, None, f"{label} ({entry['video']})", 'needs a non-empty "caption"'))
            continue
        out.append(Candidate(video, caption.strip(), f"{label} ({entry['video']})"))
    return out


def normalise(frames: np.ndarray, fps: float, target_fps: float | None, max_frames: int,
              size: tuple[int, int]) -> np.ndarray:
    """Resample time to `target_fps` (None: spread the whole clip over `max_frames`), keep the longest
    4k+1 prefix up to `max_frames`, centre-crop to the aspect of `size` and resize to it."""
    from PIL import Image

    count = len(frames)
    if target_fps is None:
        available = np.arange(count)
    else:
        times = np.arange(math.ceil(count / fps * target_fps - 1e-6)) / target_fps
        available = np.floor(times * fps + 1e-6).astype(int)
        available = available[available < count]
    n = min(max_frames, 4 * ((len(available) - 1) // 4) + 1) if len(available) else 0
    if n < MIN_FRAMES:
        where = f" ({len(available)} at {target_fps:g} fps)" if target_fps is not None else ""
        raise ValueError(f"too short: {count} frame(s){where}, at least {MIN_FRAMES} needed")
    picks = np.linspace(0, count - 1, n).round().astype(int) if target_fps is None else available[:n]
    h, w = size
    height, width = frames.shape[1:3]
    crop_w = min(width, height * w / h)
    crop_h = crop_w * h / w
    box = ((width - crop_w) / 2, (height - crop_h) / 2, (width + crop_w) / 2, (height + crop_h) / 2)
    return np.stack([np.asarray(Image.fromarray(frames[i]).resize((w, h), Image.Resampling.LANCZOS, box=box))
                     for i in picks])


def find_candidates(path: Path) -> list[Candidate]:
    """The clips offered by a folder (video + same-name .txt) or a JSONL manifest (video, caption),
    each with its problem if it is already known to be unusable."""
    path = Path(path)
    if path.is_dir():
        candidates = _folder_candidates(path)
    elif path.is_file() and path.suffix.lower() == ".jsonl":
        candidates = _manifest_candidates(path)
    elif path.exists():
        raise P2EError(f"{path} is neither a folder nor a .jsonl manifest",
                       hint="give a folder of clip.mp4 + clip.txt pairs, or a JSONL file of {\"video\", \"caption\"}")
    else:
        raise P2EError(f"{path} does not exist")
    if not any(c.video for c in candidates):
        raise P2EError(f"no videos found in {path}", hint=f"videos are {', '.join(VIDEO_SUFFIXES)} files, each with a same-name .txt caption")
    return candidates


def add_clips(reg: Registry, path: Path, effect: str, fps: float | None = DEFAULT_FPS, max_frames: int = 17,
              size: tuple[int, int] = (64, 64), heldout: bool = False, candidates: list[Candidate] | None = None,
              advance: Progress | None = None) -> AddReport:
    """Ingest real clips from a folder or manifest (`candidates`: its `find_candidates`, if already found).
    With `heldout` the clips are for validation only (photo_split "heldout"), never trained on.

    Each valid clip is normalised (see `normalise`), hashed and stored; clips already in the registry
    are reported as existing. Invalid ones are skipped with a reason. Raises P2EError (exit 2) when
    none is valid.
    """
    from .video import read_video

    validate_name(effect, "effect name")
    check_frame_count(max_frames)
    if fps is not None and not (0 < fps <= 240):
        raise P2EError(f"bad --fps {fps}", hint="give frames per second between 0 and 240, or 'fit'")
    candidates = find_candidates(path) if candidates is None else candidates
    report = AddReport()
    known = _clip_hashes(reg)
    parent: Record | None = None
    for candidate in candidates:
        reason = candidate.problem
        if reason is None:
            try:
                assert candidate.video is not None
                raw, source_fps = read_video(candidate.video)
                if min(raw.shape[1:3]) < MIN_SIDE:
                    raise ValueError(f"too small: {raw.shape[2]}x{raw.shape[1]} pixels, at least {MIN_SIDE} per side needed")
                clip = normalise(raw, source_fps, fps, max_frames, size)
            except P2EError as e:
                reason = e.message.replace(f" {candidate.video}", "")
            except ValueError as e:
                reason = str(e)
        if reason is not None:
            report.skipped.append({"file": candidate.label, "reason": reason})
        else:
            digest = frames_hash(clip)
            if digest in known:
                report.existing.append(reg.get(known[digest], "clip"))
            else:
                parent = parent or real_effect_record(reg, effect)
                data = {"effect": effect, "caption": candidate.caption, "source": "real",
                        "photo_split": "heldout" if heldout else "train",
                        "effect_split": parent.data.get("split", "train"), "origin": str(candidate.video.resolve()),
                        "frames": len(clip), "height": size[0], "width": size[1],
                        "fps": fps if fps is not None else round(source_fps * (len(clip) - 1) / max(len(raw) - 1, 1), 3)}
                record = _store_clip(reg, clip, digest, data, parent.id)
                known[digest] = record.id
                report.added.append(record)
        if advance:
            advance()
    if not report.added and not report.existing:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in report.skipped[:5])
        raise P2EError(f"no valid clips in {path} ({len(report.skipped)} skipped: {reasons})",
                       hint="each video needs a same-name .txt caption and at least 5 frames")
    return report


# -- export -------------------------------------------------------------------------------------

def export_clips(reg: Registry, effect: str, out: Path, photos: str = "train", video_format: str = "mp4",
                 advance: Progress | None = None) -> list[dict[str, str]]:
    """Write an effect's clips in the layout Wan trainers read: `<id>.mp4` + `<id>.txt` caption per
    clip, plus `metadata.jsonl` ({"video", "caption"} per line, as `curate add` reads back)."""
    from .video import write_video

    if video_format not in ("mp4", "gif", "webp"):
        raise P2EError(f"unknown video format {video_format!r}", hint="use mp4, gif or webp")
    records = list_clips(reg, effect=effect, photos=photos)
    if not records:
        raise P2EError(f"effect {effect!r} has no clips on {photos} photos",
                       hint=f"make some: p2e curate synth --effects {effect}")
    if out.exists() and not out.is_dir():
        raise P2EError(f"{out} exists and is not a folder")
    if not out.parent.is_dir():
        raise P2EError(f"folder {out.parent} does not exist", hint=f"create it first: mkdir -p {out.parent}")
    try:
        out.mkdir(exist_ok=True)
    except OSError as e:
        raise write_failure(str(out), e) from e
    rows = []
    for record in records:
        video = out / f"{record.data['effect']}-{record.id}.{video_format}"
        write_video(load_clip(reg, record), video, fps=max(1, round(record.data.get("fps", SYNTH_FPS))))
        with atomic_write(video.with_suffix(".txt")) as tmp:
            tmp.write_text(record.data["caption"] + "\n", encoding="utf-8")
        rows.append({"video": video.name, "caption": record.data["caption"], "clip": record.id})
        if advance:
            advance()
    with atomic_write(out / "metadata.jsonl") as tmp:
        tmp.write_text("".join(json.dumps({"video": r["video"], "caption": r["caption"]}) + "\n" for r in rows),
                       encoding="utf-8")
    return rows

