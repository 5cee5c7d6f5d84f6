"""Effect families: small vectorised numpy functions `(image, params, t) -> frame`.

`image` and the returned frame are float32 (H, W, 3) in [0, 1]; `t` in [0, 1] is the effect's
progress. Every family is the identity at t = 0 (up to float rounding), so a clip rendered from a
photo starts on that photo, as image-to-video needs. Randomness (noise fields, tile motion, drops)
comes only from `params["seed"]`, so a clip is a pure function of (image, params, frames).

Geometric families compute, for every output pixel, where it samples the input (inverse mapping)
and read it with bilinear interpolation (`sample`); colour families blend toward a target look.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np

Params = Mapping[str, Any]
Family = Callable[[np.ndarray, Params, float], np.ndarray]
F32 = np.float32
LUMA = np.asarray([0.299, 0.587, 0.114], F32)


# -- helpers ---------------------------------------------------------------------------------------

@lru_cache(maxsize=32)
def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x), float32, read-only."""
    y, x = np.mgrid[0:h, 0:w].astype(F32)
    y.setflags(write=False)
    x.setflags(write=False)
    return y, x


@lru_cache(maxsize=32)
def polar(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centred coordinates (u, v) with v pointing up, scaled so the inscribed circle has radius 1,
    plus radius r and angle a of each pixel."""
    y, x = grid(h, w)
    half = min(h, w) / 2
    u, v = (x - (w - 1) / 2) / half, ((h - 1) / 2 - y) / half
    r, a = np.hypot(u, v), np.arctan2(v, u)
    for array in (u, v, r, a):
        array.setflags(write=False)
    return u, v, r, a


@lru_cache(maxsize=32)
def corner_radius(h: int, w: int) -> np.ndarray:
    """Distance from the centre scaled so the corners are at 1, whatever the aspect (read-only)."""
    r = polar(h, w)[2]
    scaled = r / r.max()
    scaled.setflags(write=False)
    return scaled


def from_polar(h: int, w: int, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (y, x) of centred coordinates (inverse of `polar`'s u, v)."""
    half = min(h, w) / 2
    return (h - 1) / 2 - v * half, u * half + (w - 1) / 2


def sample(image: np.ndarray, y: np.ndarray, x: np.ndarray, mode: str = "fill",
           fill: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Read `image` at fractional pixel positions with bilinear interpolation.

    Outside the image, `mode` decides: "fill" (a colour), "clamp" (nearest edge pixel), "wrap"
    (tile the plane) or "reflect" (mirror at the edges).
    """
    h, w = image.shape[:2]
    if mode == "wrap":
        y, x = np.mod(y, h), np.mod(x, w)
    elif mode == "reflect":
        y = (h - 1) - np.abs(np.mod(y, 2 * (h - 1)) - (h - 1))
        x = (w - 1) - np.abs(np.mod(x, 2 * (w - 1)) - (w - 1))
    y0, x0 = np.floor(y), np.floor(x)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    if mode == "wrap":
        y1, x1 = (y0 + 1) % h, (x0 + 1) % w
        y0, x0 = y0 % h, x0 % w
    else:
        y1, x1 = np.clip(y0 + 1, 0, h - 1), np.clip(x0 + 1, 0, w - 1)
        y0, x0 = np.clip(y0, 0, h - 1), np.clip(x0, 0, w - 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    out = top * (1 - fy) + bottom * fy
    if mode == "fill":
        eps = 1e-3
        inside = (y >= -eps) & (y <= h - 1 + eps) & (x >= -eps) & (x <= w - 1 + eps)
        out = np.where(inside[..., None], out, np.asarray(fill, F32))
    return out.astype(F32, copy=False)


def lerp(a: np.ndarray, b: np.ndarray | float, s: float | np.ndarray) -> np.ndarray:
    return (a + (np.asarray(b, F32) - a) * s).astype(F32, copy=False)


def luma(image: np.ndarray) -> np.ndarray:
    return image @ LUMA


def smoothstep(edge0: float, edge1: float, x: np.ndarray | float) -> np.ndarray | float:
    s = np.clip((np.asarray(x, F32) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return s * s * (3 - 2 * s)


def convolve1d(image: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Convolve along one axis with edge padding (kernel length odd, centred)."""
    r = len(kernel) // 2
    if r == 0:
        return image * F32(kernel[0])
    pad = [(0, 0)] * image.ndim
    pad[axis] = (r, r)
    padded = np.pad(image, pad, mode="edge")
    n = image.shape[axis]
    out = np.zeros_like(image)
    for i, weight in enumerate(kernel):
        out += F32(weight) * np.take(padded, range(i, i + n), axis=axis)
    return out


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of standard deviation `sigma` pixels (identity below 0.05)."""
    if sigma < 0.05:
        return image
    r = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    return convolve1d(convolve1d(image, kernel, 0), kernel, 1)


def box_blur(image: np.ndarray, length: float, axis: int) -> np.ndarray:
    """A 1-D box blur of fractional `length` pixels along `axis` (motion blur)."""
    if length <= 1.0:
        return image
    r = math.ceil((length - 1) / 2)
    kernel = np.ones(2 * r + 1)
    kernel[[0, -1]] = ((length - 1) / 2 - (r - 1))  # fractional end taps keep the length continuous
    return convolve1d(image, kernel / kernel.sum(), axis)


def edges(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the luma, (H, W) roughly in [0, 1]."""
    g = np.pad(luma(image), 1, mode="edge")
    gx = (g[:-2, 2:] + 2 * g[1:-1, 2:] + g[2:, 2:]) - (g[:-2, :-2] + 2 * g[1:-1, :-2] + g[2:, :-2])
    gy = (g[2:, :-2] + 2 * g[2:, 1:-1] + g[2:, 2:]) - (g[:-2, :-2] + 2 * g[:-2, 1:-1] + g[:-2, 2:])
    return np.hypot(gx, gy) / 4


@lru_cache(maxsize=64)
def noise(seed: int, h: int, w: int, scale: float = 8.0) -> np.ndarray:
    """Smooth value noise in [0, 1], (H, W), with features about `scale` pixels wide (cached)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((int(h / scale) + 3, int(w / scale) + 3)).astype(F32)
    y, x = grid(h, w)
    field = sample(coarse[..., None].repeat(3, -1), y / scale + 1, x / scale + 1, mode="clamp")[..., 0]
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    field.setflags(write=False)
    return field


@lru_cache(maxsize=64)
def uniform(seed: int, *shape: int) -> np.ndarray:
    """Seeded uniform random numbers in [0, 1) (cached, read-only)."""
    values = np.random.default_rng(seed).random(shape).astype(F32)
    values.setflags(write=False)
    return values


def rgb_to_hsv(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in [0, 1), saturation and value of an RGB image."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    v = image.max(-1)
    c = v - image.min(-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-6), 0)
    safe = np.maximum(c, 1e-6)
    hue = np.where(v == r, (g - b) / safe, np.where(v == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = np.where(c > 0, np.mod(hue / 6, 1.0), 0)
    return hue.astype(F32), s.astype(F32), v.astype(F32)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    k = np.mod(np.asarray([5.0, 3.0, 1.0], F32) + h[..., None] * 6, 6)
    return (v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)).astype(F32)


def hue_colour(degrees: float) -> np.ndarray:
    """The fully saturated RGB colour of a hue in degrees."""
    return hsv_to_rgb(np.asarray(degrees / 360, F32), np.asarray(1, F32), np.asarray(1, F32))


def paste_tiles(image: np.ndarray, tiles: int, dy: np.ndarray, dx: np.ndarray, gap: int = 0,
                shade: np.ndarray | None = None) -> np.ndarray:
    """Cut the image into tiles x tiles pieces and paste each moved by (dy, dx) pixels onto black.

    `gap` trims that many pixels off every tile's far edges (cracks); `shade` scales each tile's
    brightness. Later tiles paint over earlier ones.
    """
    h, w = image.shape[:2]
    ys, xs = np.linspace(0, h, tiles + 1).astype(int), np.linspace(0, w, tiles + 1).astype(int)
    out = np.zeros_like(image)
    for i in range(tiles):
        for j in range(tiles):
            k = i * tiles + j
            y0, y1, x0, x1 = ys[i], ys[i + 1] - gap, xs[j], xs[j + 1] - gap
            oy, ox = int(round(float(dy[k]))), int(round(float(dx[k])))
            ty0, ty1, tx0, tx1 = max(y0 + oy, 0), min(y1 + oy, h), max(x0 + ox, 0), min(x1 + ox, w)
            if ty0 >= ty1 or tx0 >= tx1:
                continue
            piece = image[ty0 - oy:ty1 - oy, tx0 - ox:tx1 - ox]
            out[ty0:ty1, tx0:tx1] = piece if shade is None else piece * shade[k]
    return out


# -- geometric families ----------------------------------------------------------------------------

def melt(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Columns slide down by uneven amounts (drips), the top row smearing after them; with
    `direction` -1 the picture rises instead (evaporates upward)."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    phases = uniform(p["seed"], 4) * 2 * math.pi
    profile = sum(np.sin(2 * math.pi * (k + 1) * p["ripples"] * x[0] / w + phases[k]) / (k + 1) for k in range(4))
    profile = 1 + p["wobble"] * profile / 1.5
    shift = p["amount"] * h * t ** 1.5 * profile * (0.35 + 0.65 * (y / h if p["direction"] > 0 else 1 - y / h))
    return sample(image, y - p["direction"] * shift, x, mode="clamp")


def bulge(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Radial magnification inside a circle: amount > 0 inflates the centre, < 0 pinches it."""
    h, w = image.shape[:2]
    u, v, r, _ = polar(h, w)
    radius = p["radius"]
    k = p["amount"] * t
    rr = np.minimum(r / radius, 1.0)
    scale = 1 - k * (1 - rr ** 2) ** 2
    return sample(image, *from_polar(h, w, u * scale, v * scale), mode="clamp")


def squash(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Scale height to `sy` and width to `sx` (about the bottom centre, or the centre), on black."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    sy, sx = 1 + (p["sy"] - 1) * t, 1 + (p["sx"] - 1) * t
    ay = h - 1 if p["anchor"] == "bottom" else (h - 1) / 2
    return sample(image, ay + (y - ay) / sy, (w - 1) / 2 + (x - (w - 1) / 2) / sx)


def jelly(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Volume-keeping wobble about the bottom: taller-thinner then shorter-wider, damped."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    s = 1 + p["amount"] * math.sin(2 * math.pi * p["wobbles"] * t) * (1 - 0.5 * t)
    return sample(image, (h - 1) + (y - (h - 1)) / s, (w - 1) / 2 + (x - (w - 1) / 2) * s, mode="clamp")


def pulse(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Zoom in and out rhythmically like a heartbeat, brightening on each beat."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    beat = math.sin(math.pi * p["beats"] * t) ** 2
    s = 1 + p["amount"] * beat
    out = sample(image, (h - 1) / 2 + (y - (h - 1) / 2) / s, (w - 1) / 2 + (x - (w - 1) / 2) / s, mode="clamp")
    return lerp(out, 1.0, 0.25 * beat)


def spin(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Rotate about the centre by `turns` full turns (positive = counterclockwise), on black."""
    h, w = image.shape[:2]
    u, v, _, _ = polar(h, w)
    angle = 2 * math.pi * p["turns"] * t
    c, s = math.cos(angle), math.sin(angle)
    return sample(image, *from_polar(h, w, c * u + s * v, -s * u + c * v))


def zoom(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Scale about the centre by `factor` ** t (> 1 zooms in; < 1 zooms out onto black)."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    s = p["factor"] ** t
    return sample(image, (h - 1) / 2 + (y - (h - 1) / 2) / s, (w - 1) / 2 + (x - (w - 1) / 2) / s)


def slide(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Translate by (dx, dy) image sizes over the clip (dy > 0 moves down), wrapping around."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    return sample(image, y - p["dy"] * h * t, x - p["dx"] * w * t, mode="wrap")


def drop(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Fall out of the bottom of the frame under gravity, leaving black."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    return sample(image, y - p["distance"] * h * t * t, x)


def flip(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Turn over like a card about the vertical (axis x) or horizontal (axis y) axis, ending mirrored."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    c = math.cos(math.pi * t)
    c = math.copysign(max(abs(c), 1e-3), c)
    if p["axis"] == "x":
        return sample(image, y, (w - 1) / 2 + (x - (w - 1) / 2) / c)
    return sample(image, (h - 1) / 2 + (y - (h - 1) / 2) / c, x)


def ripple(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Concentric waves spreading from the centre, as on water."""
    h, w = image.shape[:2]
    u, v, r, _ = polar(h, w)
    offset = p["amplitude"] * t * np.sin(2 * math.pi * (p["rings"] * r - 2 * t))
    scale = 1 + offset / np.maximum(r, 1e-3)
    return sample(image, *from_polar(h, w, u * scale, v * scale), mode="reflect")


def wave(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Sinusoidal displacement like a flag: rows shift sideways (axis x) or columns up and down (axis y)."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    phase = 2 * math.pi * p["cycles"] * t
    if p["axis"] == "x":
        return sample(image, y, x + p["amplitude"] * w * t * np.sin(2 * math.pi * p["waves"] * y / h + phase), mode="reflect")
    return sample(image, y + p["amplitude"] * h * t * np.sin(2 * math.pi * p["waves"] * x / w + phase), x, mode="reflect")


def swirl(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Twist around the centre, strongest in the middle (strength in turns; positive = counterclockwise);
    with `suck` > 0 the picture also shrinks into the centre (a vortex)."""
    h, w = image.shape[:2]
    u, v, r, _ = polar(h, w)
    angle = 2 * math.pi * p["strength"] * t * np.exp(-2 * r * r)
    c, s = np.cos(angle), np.sin(angle)
    grow = 1 + p["suck"] * t * t
    return sample(image, *from_polar(h, w, (c * u + s * v) * grow, (-s * u + c * v) * grow),
                  mode="clamp" if p["suck"] == 0 else "fill")


def kaleidoscope(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Fold the picture into mirrored wedges that slowly turn, blending in from the photo."""
    h, w = image.shape[:2]
    _, _, r, a = polar(h, w)
    wedge = 2 * math.pi / p["wedges"]
    folded = np.abs(np.mod(a + 2 * math.pi * 0.15 * t, wedge) - wedge / 2)
    mirrored = sample(image, *from_polar(h, w, 0.9 * r * np.cos(folded), 0.9 * r * np.sin(folded)), mode="reflect")
    return lerp(image, mirrored, smoothstep(0.0, 0.5, t))


def shake(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Jittery camera shake growing to `amplitude` of the frame size."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    jolts = uniform(p["seed"], 64, 2) * 2 - 1
    dy, dx = jolts[int(round(t * 63))] * p["amplitude"] * t
    return sample(image, y + dy * h, x + dx * w, mode="reflect")


def shatter(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Crack into tiles that then fall away one by one under gravity, drifting sideways."""
    h, w = image.shape[:2]
    n = p["tiles"]
    rnd = uniform(p["seed"], n * n, 2)
    start = 0.2 + 0.45 * rnd[:, 0]
    fall = np.maximum(0.0, t - start)
    dy = 2.5 * h * fall ** 2
    dx = (rnd[:, 1] - 0.5) * 0.6 * w * fall
    return paste_tiles(image, n, dy, dx, gap=int(t > 0) + int(t > 0.15))


def explode(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Burst into tiles flying outward from the centre, with a bright flash."""
    h, w = image.shape[:2]
    n = p["tiles"]
    rnd = uniform(p["seed"], n * n, 3)
    centres = (np.arange(n) + 0.5) / n - 0.5
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    direction = np.stack([cy.ravel(), cx.ravel()], 1) + (rnd[:, :2] - 0.5) * 0.3
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-3)
    travel = p["speed"] * (0.6 + 0.8 * rnd[:, 2]) * t ** 1.5
    out = paste_tiles(image, n, direction[:, 0] * travel * h, direction[:, 1] * travel * w, gap=int(t > 0))
    flash = math.exp(-((t - 0.1) / 0.06) ** 2) * 0.5 if t > 0 else 0.0
    return lerp(out, np.asarray([1.0, 0.85, 0.5], F32), flash)


def disintegrate(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Crumble into dust from one side: pixels come loose, drift up and away, and fade."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    release = 0.75 * (1 - x / (w - 1)) * 0.8 + 0.2 * noise(p["seed"], h, w, 4.0)
    age = np.maximum(0.0, t * 1.25 - release)
    loose = age > 0
    out = np.where(loose[..., None], 0.0, image).astype(F32)
    jitter = uniform(p["seed"] + 1, h, w)
    ny = np.round(y - age * h * (0.4 + 0.4 * jitter)).astype(int)
    nx = np.round(x + age * w * 0.6 * (jitter - 0.2)).astype(int)
    fade = np.clip(1 - 2.5 * age, 0, 1)
    keep = loose & (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w) & (fade > 0)
    out[ny[keep], nx[keep]] = image[keep] * fade[keep][:, None] + (1 - fade[keep][:, None]) * 0.35
    return out


def tv_off(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """An old TV switching off: the picture collapses to a bright line, then a dot, then black."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    sy = max(1 - smoothstep(0.0, 0.55, t) * 0.98, 0.02)
    sx = max(1 - smoothstep(0.55, 0.85, t), 0.01)
    out = sample(image, (h - 1) / 2 + (y - (h - 1) / 2) / sy, (w - 1) / 2 + (x - (w - 1) / 2) / sx)
    inside = (np.abs(y - (h - 1) / 2) <= sy * h / 2) & (np.abs(x - (w - 1) / 2) <= sx * w / 2)
    glow = np.where(inside[..., None], lerp(out, 1.0, 0.8 * smoothstep(0.0, 0.6, t)), out)
    return (glow * (1 - smoothstep(0.85, 1.0, t))).astype(F32)


# -- colour and texture families -----------------------------------------------------------------

def hue(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Recolour everything to one hue (degrees), keeping brightness; grey areas take the hue too."""
    _, s, v = rgb_to_hsv(image)
    target = hsv_to_rgb(np.full_like(v, p["hue"] / 360), np.maximum(s, 0.6), v)
    return lerp(image, target, t)


def rainbow(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Cycle every colour around the colour wheel `cycles` times, saturating as it goes."""
    h, s, v = rgb_to_hsv(image)
    shifted = hsv_to_rgb(np.mod(h + p["cycles"] * t, 1.0), np.maximum(s, 0.7 * smoothstep(0.0, 0.3, t)), v)
    return lerp(image, shifted, smoothstep(0.0, 0.15, t)) if t < 0.15 else shifted


def tone(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Grade toward a look: grey (black and white), sepia (old photo) or vivid (saturated, contrasty)."""
    grey = luma(image)[..., None]
    if p["look"] == "grey":  # black-and-white film: no colour, a little more contrast
        target = np.repeat(np.clip(0.5 + (grey - 0.5) * 1.3, 0, 1), 3, -1)
    elif p["look"] == "sepia":  # brown-toned, faded blacks, darkened corners
        r = corner_radius(*image.shape[:2])
        aged = (0.12 + 0.8 * grey) * np.clip(1.15 - 0.5 * r, 0, 1)[..., None]
        target = np.clip(aged * np.asarray([1.2, 0.95, 0.65], F32), 0, 1)
    else:
        target = np.clip(0.5 + (grey + (image - grey) * 3.0 - 0.5) * 1.4, 0, 1)
    return lerp(image, target, t)


def fade(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Fade to a flat grey `level` (0 black, 1 white)."""
    return lerp(image, p["level"], t)


def glow(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Overexpose: brightness climbs and highlights bloom into a soft glow."""
    bright = image * (1 + p["exposure"] * t)
    bloom = gaussian_blur(np.clip(bright - 0.7, 0, None), 1 + 3 * t)
    return np.clip(bright + t * bloom * np.asarray([1.0, 0.9, 0.7], F32), 0, 1).astype(F32)


def blur(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Lose focus: a Gaussian blur growing to `sigma` (fraction of the size)."""
    return gaussian_blur(image, p["sigma"] * min(image.shape[:2]) * t)


def motion_blur(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Streak along one axis (x: horizontal, y: vertical) as if moving fast."""
    return box_blur(image, 1 + p["length"] * image.shape[1 if p["axis"] == "x" else 0] * t, 1 if p["axis"] == "x" else 0)


def pixelate(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Coarsen into square blocks growing to `block` (fraction of the size)."""
    h, w = image.shape[:2]
    b = max(1, int(round(1 + (p["block"] * min(h, w) - 1) * t)))
    if b == 1:
        return image
    ny, nx = math.ceil(h / b), math.ceil(w / b)
    padded = np.pad(image, ((0, ny * b - h), (0, nx * b - w), (0, 0)), mode="edge")
    blocks = padded.reshape(ny, b, nx, b, 3).mean(axis=(1, 3))
    return np.repeat(np.repeat(blocks, b, 0), b, 1)[:h, :w].astype(F32)


def posterize(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Reduce each channel to fewer and fewer levels, down to `levels`."""
    s = math.sqrt(t)  # levels fall fast at first, so the banding shows early
    levels = max(2, int(round(256 ** (1 - s) * p["levels"] ** s)))
    return (np.round(image * (levels - 1)) / (levels - 1)).astype(F32)


def cartoon(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Turn into a cartoon: smooth flat colours and dark ink outlines."""
    smooth = gaussian_blur(image, 1.0)
    flat = np.round(np.clip(smooth * 1.15, 0, 1) * (p["levels"] - 1)) / (p["levels"] - 1)
    ink = (edges(smooth) > 0.12)[..., None]
    return lerp(image, np.where(ink, 0.05, flat), t)


def sketch(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """A pencil drawing: grey strokes on white paper (colour dodge of the blurred negative)."""
    grey = luma(image)
    blurred = gaussian_blur((1 - grey)[..., None], 2.0)[..., 0]
    drawing = np.clip(grey / np.maximum(1 - blurred, 1e-3), 0, 1) ** 3
    return lerp(image, np.repeat(drawing[..., None], 3, -1) * np.asarray([0.98, 0.97, 0.93], F32), t)


def invert(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """The photographic negative spreads out from the centre in a growing disc."""
    h, w = image.shape[:2]
    _, _, r, _ = polar(h, w)
    reach = 1.5 * t * math.sqrt(2)
    return lerp(image, 1 - image, smoothstep(reach, reach - 0.25, r)[..., None] if t > 0 else 0.0)


def solarize(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Invert only the tones above a threshold sinking from the brightest tone to the median (Sabattier effect)."""
    grey = luma(image)
    top, median = float(grey.max()), float(np.median(grey))
    bright = (grey > top - (top - median) * t + 1e-3)[..., None]
    return np.where(bright, lerp(image, 1 - image, smoothstep(0.0, 0.2, t)), image).astype(F32)


COLOUR_MAPS = {
    "thermal": [(0, 0, 0), (0.2, 0, 0.6), (0.8, 0, 0.5), (1, 0.45, 0), (1, 0.9, 0.1), (1, 1, 1)],
    "xray": [(1, 1, 1), (0.7, 0.85, 1.0), (0.2, 0.35, 0.6), (0.02, 0.05, 0.12)],
}


def colour_map(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """False colour: thermal camera, x-ray (inverted blue-grey), or night vision (green, grainy, vignetted)."""
    grey = luma(image)
    if p["map"] == "night":
        h, w = grey.shape
        _, _, r, _ = polar(h, w)
        grain = uniform(p["seed"], h, w) - 0.5
        level = np.clip(grey * 1.6 + 0.25 * grain, 0, 1) * np.clip(1.25 - 0.55 * r, 0, 1)
        target = level[..., None] * np.asarray([0.25, 1.0, 0.3], F32)
    else:
        stops = np.asarray(COLOUR_MAPS[p["map"]], F32)
        pos = np.linspace(0, 1, len(stops))
        target = np.stack([np.interp(grey, pos, stops[:, c]) for c in range(3)], -1).astype(F32)
    return lerp(image, target, t)


def dissolve(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Pixels flip one by one, in random order, into coloured noise."""
    h, w = image.shape[:2]
    order = uniform(p["seed"], h, w)
    static = uniform(p["seed"] + 1, h, w, 3)
    return np.where((order < t)[..., None], static, image).astype(F32)


def glitch(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Digital glitches: bands of rows torn sideways, colour channels split, blocks corrupted."""
    if t <= 0:
        return image
    h, w = image.shape[:2]
    rng = np.random.default_rng([p["seed"], int(round(t * 1000))])
    out = image.copy()
    strength = p["intensity"] * t
    for _ in range(6):
        y0 = int(rng.integers(0, h))
        band = slice(y0, min(h, y0 + int(rng.integers(1, max(2, h // 6)))))
        out[band] = np.roll(out[band], int(rng.normal(0, strength * w * 0.3)), axis=1)
    split = int(round(strength * w * 0.08))
    out[..., 0] = np.roll(out[..., 0], split, axis=1)
    out[..., 2] = np.roll(out[..., 2], -split, axis=1)
    for _ in range(int(rng.poisson(4 * strength))):
        by, bx, size = int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(2, max(3, h // 5)))
        out[by:by + size, bx:bx + 2 * size] = rng.random(3).astype(F32)
    return out


def burn(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Burn from the edges inward: a glowing, ragged ember front leaves charred black behind it."""
    h, w = image.shape[:2]
    level = corner_radius(h, w) + 0.3 * noise(p["seed"], h, w, 6.0)
    front = 1.7 - 1.9 * t  # above every level (and its scorch band) at t = 0
    ember = smoothstep(0.1, 0.0, np.abs(level - front))[..., None]
    charred = (level > front)[..., None]
    scorch = smoothstep(front - 0.35, front, level)[..., None] * 0.6
    out = lerp(image, np.asarray([0.35, 0.2, 0.05], F32), scorch)
    ash = (0.03 + 0.12 * noise(p["seed"] + 1, h, w, 2.0))[..., None] * np.asarray([1.0, 0.9, 0.8], F32)
    out = np.where(charred, ash, out)
    return lerp(out, np.asarray([1.0, 0.5, 0.05], F32), ember * 0.9)


def freeze(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Freeze over: an icy blue tint and white frost crystals creeping in from the edges."""
    h, w = image.shape[:2]
    crystals = noise(p["seed"], h, w, 2.0)
    frosted = (corner_radius(h, w) + 0.35 * noise(p["seed"] + 1, h, w, 6.0)) > 1.4 - 1.3 * t
    icy = lerp(image, (0.55 + 0.45 * luma(image)[..., None]) * np.asarray([0.75, 0.9, 1.0], F32), 0.7 * t)
    frost = lerp(icy, np.asarray([0.92, 0.97, 1.0], F32), (0.5 + 0.5 * crystals)[..., None])
    return np.where(frosted[..., None], frost, icy).astype(F32)


def neon(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Glowing neon outlines on black; colour by `hue` degrees, or a rainbow across the frame when None."""
    h, w = image.shape[:2]
    e = np.clip((edges(gaussian_blur(image, 0.7)) - 0.04) * 5, 0, 1)[..., None]
    if p["hue"] is None:
        _, x = grid(h, w)
        colour = hsv_to_rgb(np.mod(x / w * 0.8 + 0.5, 1), np.ones_like(x), np.ones_like(x))
    else:
        colour = hue_colour(p["hue"])
    lines = e * colour
    lit = np.clip(lines + gaussian_blur(lines, 1.5), 0, 1)
    return lerp(image, lit, t)


def rain(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Rain sets in: the scene darkens and turns cold while more and more streaks fall."""
    h, w = image.shape[:2]
    n = p["drops"]
    rnd = uniform(p["seed"], n, 3)
    visible = rnd[:, 2] * 0.9 < t
    length = max(2, h // 10)
    top = np.mod(rnd[:, 0] * h + t * 2.5 * h, h).astype(int)[visible]
    cols = (rnd[:, 1] * w).astype(int)[visible]
    rows = np.mod(top[:, None] + np.arange(length), h)
    out = lerp(image, luma(image)[..., None] * np.asarray([0.55, 0.6, 0.75], F32), 0.6 * t)
    streak = np.zeros((h, w), F32)
    streak[rows.ravel(), np.repeat(cols, length)] = 1.0
    return lerp(out, np.asarray([0.8, 0.85, 0.95], F32), 0.75 * streak[..., None])


def snow(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Snow falls: white flakes drift down, swaying, and the scene turns pale and cold."""
    h, w = image.shape[:2]
    n = p["flakes"]
    rnd = uniform(p["seed"], n, 4)
    visible = rnd[:, 3] * 0.9 < t
    fy = np.mod(rnd[:, 0] * h + t * 0.8 * h, h)
    fx = np.mod(rnd[:, 1] * w + 0.04 * w * np.sin(2 * math.pi * (2 * t + rnd[:, 2])), w)
    out = lerp(image, 0.6 + 0.4 * luma(image)[..., None] * np.asarray([0.9, 0.95, 1.0], F32), 0.45 * t)
    rows, cols = fy[visible].astype(int), fx[visible].astype(int)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        out[np.mod(rows + dy, h), np.mod(cols + dx, w)] = 1.0
    return out


def iris(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """A circular iris closes on the centre, blacking out everything outside it."""
    h, w = image.shape[:2]
    radius = 1.1 * (1 - t) + 0.02  # the corners (radius 1) are inside at t = 0
    return (image * smoothstep(radius, radius - 0.06, corner_radius(h, w))[..., None]).astype(F32)


def wipe(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """A straight edge sweeps across the frame (from the left, right, top or bottom), leaving grey `level`."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    pos = {"left": x / (w - 1), "right": 1 - x / (w - 1), "top": y / (h - 1), "bottom": 1 - y / (h - 1)}[p["side"]]
    covered = smoothstep(t * 1.1 - 0.05, t * 1.1 - 0.1, pos)[..., None] if t > 0 else 0.0
    return lerp(image, p["level"], covered)


def flood(image: np.ndarray, p: Params, t: float) -> np.ndarray:
    """Water rises from the bottom until the scene is submerged: wavy surface, blue, refracted."""
    h, w = image.shape[:2]
    y, x = grid(h, w)
    level = (h + 2.5) - 1.25 * (h + 4) * t + 1.5 * np.sin(2 * math.pi * (2 * x / w + 3 * t))  # below the frame at t = 0
    under = (y >= level)[..., None]
    bent = sample(image, y + 1.5 * np.sin(2 * math.pi * (3 * y / h + 2 * t)), x + 2.0 * np.sin(2 * math.pi * (4 * y / h + 3 * t)),
                  mode="reflect")
    water = lerp(bent * np.asarray([0.35, 0.65, 0.9], F32), np.asarray([0.05, 0.25, 0.45], F32), 0.35)
    surface = (np.abs(y - level) < 1.0)[..., None]
    return np.where(surface, 0.9, np.where(under, water, image)).astype(F32)


FAMILIES: dict[str, Family] = {f.__name__: f for f in (
    melt, bulge, squash, jelly, pulse, spin, zoom, slide, drop, flip, ripple, wave, swirl, kaleidoscope, shake,
    shatter, explode, disintegrate, tv_off, hue, rainbow, tone, fade, glow, blur, motion_blur, pixelate, posterize,
    cartoon, sketch, invert, solarize, colour_map, dissolve, glitch, burn, freeze, neon, rain, snow, iris, wipe, flood,
)}
# the families that move content (the "geometric families" section above); the rest change colour or texture
GEOMETRIC = frozenset(("melt", "bulge", "squash", "jelly", "pulse", "spin", "zoom", "slide", "drop", "flip", "ripple", "wave",
                       "swirl", "kaleidoscope", "shake", "shatter", "explode", "disintegrate", "tv_off"))
