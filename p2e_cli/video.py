"""Video and image files: the one place that reads and writes clips and contact sheets.

Frames are numpy uint8 arrays shaped (T, H, W, 3). Writing dispatches on the suffix: `.mp4`
(imageio-ffmpeg, H.264), `.gif`, `.webp` (animated), `.png` (a contact sheet of the frames).
Every write is atomic (see `files.atomic_write`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import P2EError
from .files import atomic_write, check_output_path, readable_file

VIDEO_SUFFIXES = (".mp4", ".gif", ".webp", ".png")
MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs before decoding
MAX_VIDEO_BYTES = 4 << 30  # decoded frames of one video held at once


def as_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return frames


def contact_sheet(rows: Sequence[np.ndarray], labels: Sequence[str] | None = None, max_columns: int = 17,
                  gap: int = 2) -> np.ndarray:
    """Tile clips into one image: one row per clip, up to `max_columns` evenly spaced frames each.
    Labels, when given, are drawn in a strip left of each row."""
    from PIL import Image, ImageDraw

    rows = [as_frames(r) for r in rows]
    height, width = max(r.shape[1] for r in rows), max(r.shape[2] for r in rows)
    columns = min(max_columns, max(r.shape[0] for r in rows))
    label_width = 0 if not labels else 8 + 6 * max(len(s) for s in labels)
    sheet = np.full((len(rows) * (height + gap) + gap, label_width + columns * (width + gap) + gap, 3), 255, np.uint8)
    for i, clip in enumerate(rows):
        picks = np.linspace(0, clip.shape[0] - 1, min(columns, clip.shape[0])).round().astype(int)
        for j, t in enumerate(picks):
            y, x = gap + i * (height + gap), label_width + gap + j * (width + gap)
            sheet[y:y + clip.shape[1], x:x + clip.shape[2]] = clip[t]
    if labels:
        image = Image.fromarray(sheet)
        draw = ImageDraw.Draw(image)
        for i, label in enumerate(labels):
            draw.text((4, gap + i * (height + gap) + height // 2 - 5), label, fill=(0, 0, 0))
        sheet = np.asarray(image)
    return sheet


def write_image(image: np.ndarray, path: Path | str) -> Path:
    from PIL import Image

    path = check_output_path(path)
    with atomic_write(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format=_pil_format(path))
    return path


def _pil_format(path: Path) -> str:
    return {".png": "PNG", ".gif": "GIF", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")


def write_video(frames: np.ndarray, path: Path | str, fps: int = 8) -> Path:
    """Write frames as .mp4, .gif, .webp (animated) or .png (contact sheet)."""
    import imageio.v3 as iio

    path = check_output_path(path)
    if not fps > 0:
        raise P2EError(f"cannot write {path} at {fps} frames per second", hint="give a positive frame rate")
    suffix = path.suffix.lower()
    frames = as_frames(frames)
    if suffix == ".png":
        return write_image(contact_sheet([frames]), path)
    if suffix not in VIDEO_SUFFIXES:
        raise P2EError(f"cannot write {path}: unknown video type {suffix!r}", hint=f"use one of {', '.join(VIDEO_SUFFIXES)}")
    with atomic_write(path) as tmp:
        if suffix == ".mp4":
            # H.264 needs even sizes; macro_block_size=1 keeps small frames exact instead of resizing
            iio.imwrite(tmp, frames, plugin="FFMPEG", fps=fps, codec="libx264",
                        quality=9, macro_block_size=1, pixelformat="yuv444p", ffmpeg_log_level="error")
        else:
            from PIL import Image

            images = [Image.fromarray(f) for f in frames]
            images[0].save(tmp, format=_pil_format(path), save_all=True, append_images=images[1:],
                           duration=int(1000 / fps), loop=0, **({"lossless": True} if suffix == ".webp" else {}))
    return path


def read_image(path: Path | str) -> np.ndarray:
    """Read an image as (H, W, 3) uint8; refuse non-images and decompression bombs with a clear error."""
    from PIL import Image

    path = readable_file(path, "image")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise P2EError(f"image {path} is {image.width}x{image.height}, larger than p2e accepts",
                               hint="resize it below 64 megapixels first")
            image.load()
            return np.asarray(image.convert("RGB"))
    except P2EError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise P2EError(f"cannot read image {path}: {e}", hint="give a PNG or JPEG file") from e


def read_video(path: Path | str) -> tuple[np.ndarray, float]:
    """Read a video as ((T, H, W, 3) uint8 frames, fps); unreadable files are a clear P2EError, and
    so are video decompression bombs (a few KB of H.264 can decode to many GB): frames larger than
    images may be are refused before decoding, and decoding stops at MAX_VIDEO_BYTES."""
    import imageio.v3 as iio

    path = readable_file(path, "video")
    plugin = "FFMPEG" if path.suffix.lower() not in (".gif", ".webp") else None
    decoded, total = [], 0
    try:
        meta = iio.immeta(path, plugin=plugin) if plugin else {}
        width, height = meta.get("size") or (0, 0)
        if width * height > MAX_IMAGE_PIXELS:
            raise P2EError(f"video {path} is {width}x{height}, larger than p2e accepts",
                           hint="downscale it below 64 megapixels per frame first")
        for frame in iio.imiter(path, plugin=plugin):
            total += frame.nbytes
            if total > MAX_VIDEO_BYTES:
                raise P2EError(f"video {path} decodes to more than {MAX_VIDEO_BYTES >> 30} GiB of frames",
                               hint="trim or downscale it first: a clip needs a few seconds at most")
            decoded.append(frame)
        if not decoded:
            raise P2EError(f"video {path} has no frames")
        frames = np.stack(decoded)
    except P2EError:
        raise
    except Exception as e:  # imageio/ffmpeg raise many types for corrupt input
        raise P2EError(f"cannot read video {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if frames.ndim == 3:  # grayscale
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise P2EError(f"video {path} has frames shaped {frames.shape[1:]}, not height x width x colour")
    if frames.shape[-1] == 4:
        frames = frames[..., :3]
    return frames.astype(np.uint8), float(meta.get("fps", 8.0) or 8.0)
