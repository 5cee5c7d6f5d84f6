"""Photos that effects are applied to: real photographs bundled with scikit-image plus drawn scenes.

Everything here works offline. The real photos are the image files that ship inside the
scikit-image wheel (read directly with PIL, never through `skimage.data`'s fetchers, some of which
need a download); grey ones get a fixed duotone so colour effects have colour to act on. The drawn
scenes (PIL, deterministic) add subjects the bundled set lacks: landscapes, a face, a city, fruit.

The split is data (`PHOTOS`): held-out photos are never trained on; they measure generalisation
to unseen inputs. Decoded sources and resized photos are cached, so repeated loads are free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Union

import numpy as np

from .errors import P2EError

SPLITS = ("train", "heldout")
Size = Union[int, tuple[int, int]]
Color = tuple[int, int, int]


@dataclass(frozen=True)
class Photo:
    name: str
    split: str  # "train" | "heldout"
    source: str  # "skimage:<file>" (bundled with scikit-image) or "drawn" (a scene below)
    description: str
    duotone: tuple[Color, Color] | None = None  # shadow and highlight colours for a grey photo


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "train", "skimage:astronaut.png", "astronaut Eileen Collins in front of a flag"),
    Photo("chelsea", "train", "skimage:chelsea.png", "a tabby cat, close up"),
    Photo("colorwheel", "train", "skimage:color.png", "a colour wheel"),
    Photo("hubble", "train", "skimage:hubble_deep_field.jpg", "galaxies of the Hubble deep field"),
    Photo("ihc", "train", "skimage:ihc.png", "stained tissue under a microscope"),
    Photo("logo", "train", "skimage:logo.png", "the scikit-image logo, a snake on white"),
    Photo("retina", "train", "skimage:retina.jpg", "a human retina, red on black"),
    Photo("motorcycle", "train", "skimage:motorcycle_left.png", "a motorcycle in a workshop"),
    Photo("brick", "train", "skimage:brick.png", "a brick wall", ((70, 22, 12), (236, 150, 110))),
    Photo("grass", "train", "skimage:grass.png", "a lawn, close up", ((10, 40, 5), (170, 230, 90))),
    Photo("moon", "train", "skimage:moon.png", "the moon's surface", ((8, 8, 30), (235, 235, 215))),
    Photo("page", "train", "skimage:page.png", "a printed page", ((40, 25, 10), (245, 225, 180))),
    Photo("text", "train", "skimage:text.png", "hand-drawn text", ((10, 30, 60), (240, 240, 255))),
    Photo("cell", "train", "skimage:cell.png", "a cell in saline", ((5, 20, 40), (160, 230, 255))),
    Photo("hills", "train", "drawn", "green hills, trees and a red house under a sunny sky"),
    Photo("city", "train", "drawn", "a city skyline with lit windows at dusk"),
    Photo("shapes", "train", "drawn", "bright circles, squares and triangles on pastel"),
    Photo("meadow", "train", "drawn", "a meadow of flowers under a blue sky"),
    Photo("portrait", "train", "drawn", "a cartoon face with hair and a shirt"),
    Photo("fruit", "train", "drawn", "a bowl of fruit on a wooden table"),
    Photo("coffee", "heldout", "skimage:coffee.png", "a cup of coffee on a saucer"),
    Photo("rocket", "heldout", "skimage:rocket.jpg", "a rocket on its launch pad"),
    Photo("camera", "heldout", "skimage:camera.png", "a photographer with a camera", ((20, 20, 35), (235, 225, 205))),
    Photo("coins", "heldout", "skimage:coins.png", "coins on a table", ((30, 20, 5), (250, 215, 120))),
    Photo("harbour", "heldout", "drawn", "a sailing boat and a lighthouse by the sea"),
    Photo("sunset", "heldout", "drawn", "a palm tree against a sunset over the sea"),
)
_BY_NAME = {p.name: p for p in PHOTOS}


def photo_names(split: str = "all") -> list[str]:
    """Photo names of a split: "train", "heldout" or "all" (declaration order)."""
    if split != "all" and split not in SPLITS:
        raise P2EError(f"unknown photo split {split!r}", hint="use train, heldout or all")
    return [p.name for p in PHOTOS if split == "all" or p.split == split]


def photo_info(name: str) -> Photo:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise P2EError(f"unknown photo {name!r}", hint=f"photos: {', '.join(_BY_NAME)}") from None


def _hw(size: Size) -> tuple[int, int]:
    """(height, width) from an int (square) or an (height, width) pair."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if not (8 <= int(h) <= 4096 and 8 <= int(w) <= 4096):
        raise P2EError(f"photo size {size!r} out of range", hint="use 8 to 4096 pixels per side")
    return int(h), int(w)


# -- sources ---------------------------------------------------------------------------------------

def _skimage_data_dir() -> Path:
    spec = find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise P2EError("scikit-image is not installed", hint="pip install scikit-image")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=None)
def _source(name: str):
    """The full-size RGB PIL image of a photo (cached; treat as read-only)."""
    from PIL import Image

    photo = photo_info(name)
    if photo.source == "drawn":
        return _SCENES[name]()
    path = _skimage_data_dir() / photo.source.split(":", 1)[1]
    with Image.open(path) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "P"):
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
        if photo.duotone is None:
            return image.convert("RGB")
        grey = np.asarray(image.convert("L"), np.float32)[..., None] / 255.0
        dark, light = (np.asarray(c, np.float32) for c in photo.duotone)
        return Image.fromarray((dark + (light - dark) * grey + 0.5).astype(np.uint8))


def _centre_box(width: int, height: int, h: int, w: int) -> tuple[float, float, float, float]:
    """The largest centred box of aspect w:h inside a width x height image."""
    crop_w = min(width, height * w / h)
    crop_h = crop_w * h / w
    x0, y0 = (width - crop_w) / 2, (height - crop_h) / 2
    return x0, y0, x0 + crop_w, y0 + crop_h


@lru_cache(maxsize=512)
def _load(name: str, h: int, w: int) -> np.ndarray:
    from PIL import Image

    source = _source(name)
    box = _centre_box(*source.size, h, w)
    array = np.asarray(source.resize((w, h), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0))
    array.setflags(write=False)
    return array


def load_photo(name: str, size: Size = 64) -> np.ndarray:
    """A photo centre-cropped to the aspect of `size` and resized: (H, W, 3) uint8.

    `size` is an int (square) or (height, width). The array is cached and read-only; copy it
    before writing into it.
    """
    return _load(name, *_hw(size))


@lru_cache(maxsize=64)
def _working(name: str, short_side: int):
    """The source downscaled so its short side is `short_side` (crops stay sharp, resizes fast)."""
    from PIL import Image

    source = _source(name)
    scale = short_side / min(source.size)
    if scale >= 1:
        return source
    size = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
    return source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def random_view(name: str, size: Size = 64, rng: np.random.Generator | int | None = None, *,
                min_scale: float = 0.45, flip: bool = True, jitter: float = 0.15) -> np.ndarray:
    """A random augmented view of a photo: (H, W, 3) uint8.

    A crop of the photo's aspect-matched centre box, scaled to a random `min_scale`..1 of its side
    and placed anywhere inside the image, a horizontal flip with probability 1/2 (when `flip`), and
    colour jitter: brightness, contrast and saturation each scaled by a factor in 1 +- `jitter`.
    Deterministic for a given generator state or seed.
    """
    from PIL import Image

    rng = np.random.default_rng(rng)
    h, w = _hw(size)
    source = _working(name, 4 * max(h, w))
    width, height = source.size
    x0, y0, x1, y1 = _centre_box(width, height, h, w)
    scale = math.sqrt(rng.uniform(min_scale ** 2, 1.0))  # uniform in area
    crop_w, crop_h = (x1 - x0) * scale, (y1 - y0) * scale
    left, top = rng.uniform(0, width - crop_w), rng.uniform(0, height - crop_h)
    view = np.asarray(source.resize((w, h), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h),
                                    reducing_gap=2.0), np.float32)
    if flip and rng.random() < 0.5:
        view = view[:, ::-1]
    if jitter > 0:
        brightness, contrast, saturation = rng.uniform(1 - jitter, 1 + jitter, size=3)
        grey = view.mean(axis=2, keepdims=True)
        view = grey + (view - grey) * saturation
        view = view.mean() + (view - view.mean()) * contrast
        view = view * brightness
    return np.clip(view + 0.5, 0, 255).astype(np.uint8)


# -- drawn scenes (deterministic; drawn at 256 x 256) --------------------------------------------

SCENE_SIZE = 256


def _canvas(top: Color, bottom: Color):
    """A vertical gradient canvas and its drawing context."""
    from PIL import Image, ImageDraw

    t = np.linspace(0, 1, SCENE_SIZE, dtype=np.float32)[:, None, None]
    grad = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    image = Image.fromarray(np.broadcast_to(grad, (SCENE_SIZE, SCENE_SIZE, 3)).astype(np.uint8))
    return image, ImageDraw.Draw(image)


def _finish(image, seed: int):
    """Soften the drawing and add fine grain so scenes have photo-like texture, not flat fills."""
    from PIL import Image, ImageFilter

    array = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)), np.float32)
    grain = np.random.default_rng(seed).normal(0, 4.0, array.shape[:2])[..., None]
    return Image.fromarray(np.clip(array + grain, 0, 255).astype(np.uint8))


def _hills():
    image, draw = _canvas((90, 160, 235), (215, 235, 250))
    draw.ellipse((180, 22, 228, 70), fill=(255, 225, 90))
    x = np.arange(SCENE_SIZE + 1)
    for base, amp, phase, colour in ((150, 18, 0.5, (80, 160, 70)), (185, 14, 2.0, (50, 125, 45))):
        ys = base + amp * np.sin(x / 40 + phase)
        draw.polygon([(0, SCENE_SIZE)] + list(zip(x.tolist(), ys.tolist())) + [(SCENE_SIZE, SCENE_SIZE)], fill=colour)
    draw.rectangle((40, 150, 90, 190), fill=(200, 50, 40))
    draw.polygon([(34, 152), (65, 122), (96, 152)], fill=(110, 40, 30))
    draw.rectangle((58, 168, 72, 190), fill=(90, 60, 30))
    for tx, ty in ((150, 175), (190, 182), (225, 170)):
        draw.rectangle((tx - 3, ty, tx + 3, ty + 26), fill=(100, 65, 30))
        draw.ellipse((tx - 16, ty - 26, tx + 16, ty + 6), fill=(30, 100, 35))
    return _finish(image, 1)


def _city():
    rng = np.random.default_rng(2)
    image, draw = _canvas((20, 20, 70), (240, 130, 70))
    draw.ellipse((190, 30, 222, 62), fill=(250, 245, 215))
    x = 0
    while x < SCENE_SIZE:
        width, height = int(rng.integers(22, 44)), int(rng.integers(60, 170))
        shade = int(rng.integers(25, 60))
        draw.rectangle((x, SCENE_SIZE - height, x + width, SCENE_SIZE), fill=(shade, shade, shade + 15))
        for wy in range(SCENE_SIZE - height + 6, SCENE_SIZE - 6, 10):
            for wx in range(x + 4, x + width - 5, 8):
                if rng.random() < 0.55:
                    draw.rectangle((wx, wy, wx + 3, wy + 4), fill=(255, 220, 110))
        x += width + 2
    return _finish(image, 2)


def _shapes():
    rng = np.random.default_rng(3)
    image, draw = _canvas((250, 225, 235), (215, 235, 250))
    palette = [(230, 40, 50), (30, 120, 220), (250, 190, 20), (40, 170, 80), (150, 60, 200), (250, 120, 30)]
    for i in range(22):
        cx, cy, r = rng.integers(0, SCENE_SIZE, 2).tolist() + [int(rng.integers(12, 40))]
        colour = palette[i % len(palette)]
        kind = i % 3
        if kind == 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif kind == 1:
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return _finish(image, 3)


def _meadow():
    rng = np.random.default_rng(4)
    image, draw = _canvas((70, 140, 230), (190, 220, 245))
    draw.rectangle((0, 100, SCENE_SIZE, SCENE_SIZE), fill=(70, 150, 50))
    for cx, cy, rx in ((60, 40, 30), (170, 55, 40)):
        draw.ellipse((cx - rx, cy - 12, cx + rx, cy + 12), fill=(250, 250, 250))
    colours = [(230, 40, 60), (250, 220, 40), (250, 250, 250), (160, 70, 210), (250, 130, 170)]
    for _ in range(140):
        y = int(rng.integers(105, SCENE_SIZE))
        x = int(rng.integers(0, SCENE_SIZE))
        r = 2 + (y - 100) // 30
        draw.line((x, y, x, y + 2 * r), fill=(40, 100, 30), width=1)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colours[int(rng.integers(len(colours)))])
    return _finish(image, 4)


def _portrait():
    image, draw = _canvas((120, 180, 200), (60, 110, 150))
    draw.ellipse((50, 20, 206, 190), fill=(80, 45, 25))  # hair
    draw.rectangle((60, 200, 196, 256), fill=(200, 50, 60))  # shirt
    draw.ellipse((40, 200, 216, 300), fill=(200, 50, 60))
    draw.rectangle((110, 170, 146, 210), fill=(235, 190, 150))  # neck
    draw.ellipse((70, 45, 186, 190), fill=(240, 200, 160))  # face
    draw.chord((62, 30, 194, 110), 180, 360, fill=(80, 45, 25))  # fringe
    for ex in (100, 156):
        draw.ellipse((ex - 12, 100, ex + 12, 116), fill=(255, 255, 255))
        draw.ellipse((ex - 6, 102, ex + 6, 114), fill=(40, 90, 160))
        draw.ellipse((ex - 2, 106, ex + 2, 110), fill=(0, 0, 0))
    draw.polygon([(128, 115), (120, 142), (134, 142)], fill=(215, 160, 125))
    draw.arc((104, 140, 152, 170), 20, 160, fill=(170, 40, 50), width=4)
    return _finish(image, 5)


def _fruit():
    image, draw = _canvas((245, 235, 210), (220, 200, 170))
    draw.rectangle((0, 170, SCENE_SIZE, SCENE_SIZE), fill=(140, 85, 45))
    for y in range(176, SCENE_SIZE, 12):
        draw.line((0, y, SCENE_SIZE, y + 4), fill=(115, 70, 35), width=2)
    for cx, cy, r, colour in ((95, 140, 30, (250, 140, 20)), (150, 135, 32, (200, 25, 35)),
                              (125, 110, 26, (140, 200, 60)), (185, 150, 22, (250, 220, 50))):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    for gx, gy in ((60, 150), (70, 160), (52, 162), (64, 172), (76, 148)):
        draw.ellipse((gx - 9, gy - 9, gx + 9, gy + 9), fill=(110, 40, 130))
    draw.chord((30, 120, 226, 220), 0, 180, fill=(40, 90, 170))  # bowl
    draw.line((150, 103, 154, 90), fill=(80, 50, 20), width=3)
    return _finish(image, 6)


def _harbour():
    image, draw = _canvas((120, 180, 240), (225, 240, 250))
    draw.rectangle((0, 150, SCENE_SIZE, SCENE_SIZE), fill=(30, 90, 150))
    for y in range(158, SCENE_SIZE, 9):
        draw.arc((-20, y, SCENE_SIZE + 20, y + 8), 200, 340, fill=(120, 180, 220), width=1)
    for i, y in enumerate(range(60, 150, 15)):
        draw.rectangle((200, y, 222, y + 15), fill=(230, 40, 40) if i % 2 == 0 else (250, 250, 250))
    draw.polygon([(194, 60), (211, 40), (228, 60)], fill=(40, 40, 40))
    draw.polygon([(50, 150), (150, 150), (135, 172), (65, 172)], fill=(120, 60, 30))
    draw.line((100, 60, 100, 150), fill=(60, 40, 20), width=3)
    draw.polygon([(103, 62), (103, 145), (150, 145)], fill=(250, 250, 240))
    draw.polygon([(97, 75), (97, 145), (62, 145)], fill=(250, 200, 60))
    return _finish(image, 7)


def _sunset():
    image, draw = _canvas((70, 30, 110), (250, 150, 60))
    draw.ellipse((80, 110, 180, 210), fill=(255, 210, 80))
    draw.rectangle((0, 160, SCENE_SIZE, SCENE_SIZE), fill=(60, 40, 90))
    for y in range(165, SCENE_SIZE, 7):
        draw.line((100 - (y - 160), y, 160 + (y - 160), y), fill=(240, 150, 80), width=2)
    draw.polygon([(30, 256), (40, 120), (48, 120), (46, 256)], fill=(20, 10, 20))
    for angle in range(0, 360, 45):
        ex, ey = 44 + 45 * math.cos(math.radians(angle)), 118 + 22 * math.sin(math.radians(angle)) + 10
        draw.line((44, 118, ex, ey), fill=(20, 10, 20), width=7)
    return _finish(image, 8)


_SCENES: dict[str, Callable[[], object]] = {
    "hills": _hills, "city": _city, "shapes": _shapes, "meadow": _meadow, "portrait": _portrait,
    "fruit": _fruit, "harbour": _harbour, "sunset": _sunset,
}
