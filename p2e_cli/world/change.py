"""Generic change for the broad corpus: random motion and recolouring of a neutral clip.

    neutral clip (no grain) --warp--> moved --recolour--> --occlude--> + grain = broad clip
                 one sampling grid per frame:          photometric ramps,   shapes of any
                 affine (rotate, zoom, pan, shear,     globally or behind   colour that grow
                 squash) + smooth / piecewise field    a sweeping or        in along a path
                 + polar twist; edges fill, clamp,     growing mask
                 reflect or wrap

Every change has its own time curve c(t) with c(0) = 0 (eased power, smoothstep, a window of the
clip, or a damped oscillation), so frame 0 stays the view, changes can run one after another or at
once, and speeds range from a drift to several turns. Parameters are drawn from wide continuous
ranges, not from the effect library (which this module does not import): a general prior that a
LoRA steers toward one effect.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .corpus import _neutral_motion, add_grain, neutral_clips

NEUTRAL_SHARE = 0.25


def broad_clips(bank: torch.Tensor, n: int, frames: int, size: int, generator: torch.Generator,
                codes: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n broad-corpus clips (n, 3, frames, size, size) in [-1, 1] and which carry a change (the rest are
    neutral). With frames == 1 each clip is a single frame at a random time: changed stills for a codec.
    A list passed as `codes` receives each clip's motion code (`motion_codes`; "" for neutral clips)."""
    g = generator
    video, noise = _neutral_motion(bank, n, frames, size, g)
    t = torch.linspace(0, 1, frames) if frames > 1 else torch.rand(1, generator=g)
    changed = torch.rand(n, generator=g) >= NEUTRAL_SHARE
    draw = torch.rand(n, 5, generator=g)
    use = {"affine": draw[:, 0] < 0.6, "field": draw[:, 1] < 0.35, "colour": draw[:, 2] < 0.6,
           "mask": draw[:, 3] < 0.35, "shape": draw[:, 4] < 0.15}
    nothing = ~(use["affine"] | use["field"] | use["colour"] | use["shape"])
    use["affine"] = use["affine"] | nothing
    use = {k: v & changed for k, v in use.items()}
    moved, summary = warp(video, t, use["affine"], use["field"], g)
    recoloured = recolour(moved, t, g)
    mask = sweep_mask(n, t, size, g)
    # recolour where `colour`: everywhere, or (with `mask`) behind the sweeping mask
    weight = torch.where(use["mask"].view(n, 1, 1, 1, 1), mask, 1.0) * use["colour"].float().view(n, 1, 1, 1, 1)
    out = moved + weight * (recoloured - moved)
    out = occlude(out, t, use["shape"], g)
    if codes is not None:
        codes.extend(motion_codes(summary, use, changed))
    if frames > 1:
        out[:, :, 0] = video[:, :, 0]  # the conditioning frame is the view, exactly
    return add_grain(out.clamp(-1, 1), noise, g), changed


def curves(n: int, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(n, T) random time curves with c(0) = 0, mostly in [0, 1] (oscillations in [-1, 1])."""
    kind = torch.randint(4, (n, 1), generator=g)
    power = torch.exp(torch.empty(n, 1).uniform_(-1.0, 1.0, generator=g))
    start = torch.rand(n, 1, generator=g) * 0.6
    stop = start + (1 - start) * (0.3 + 0.7 * torch.rand(n, 1, generator=g))
    freq = 0.5 + 3.0 * torch.rand(n, 1, generator=g)
    damp = torch.rand(n, 1, generator=g)
    tt = t.view(1, -1)
    window = ((tt - start) / (stop - start)).clamp(0, 1)
    smooth = window * window * (3 - 2 * window)
    wave = torch.sin(2 * math.pi * freq * tt) * (1 - damp * tt)
    return torch.where(kind == 0, tt ** power, torch.where(kind == 1, smooth, torch.where(kind == 2, window ** power, wave)))


def signed(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    """Magnitudes uniform in [low, high] with a random sign."""
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return sign * (low + (high - low) * torch.rand(n, generator=g))


def sometimes(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=g) < p).float()


def warp(video: torch.Tensor, t: torch.Tensor, affine: torch.Tensor, field: torch.Tensor,
         g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Resample every frame through its own grid: output pixel p shows the source at
    centre + A(t) (p - centre) - pan(t) + field(p, t) (+ a polar twist). Also returns a summary of
    each clip's warp, its parameters averaged over the clip's frames (for `motion_codes`)."""
    n, _, frames, h, w = video.shape
    T = len(t)
    # affine parts, each on its own curve, each present with some probability
    turns = signed(n, 0.05, 1.5, g) * sometimes(n, 0.5, g)
    zoom = signed(n, 0.1, 1.3, g) * sometimes(n, 0.5, g)
    squash = signed(n, 0.1, 0.8, g) * sometimes(n, 0.25, g)
    shear = signed(n, 0.1, 0.8, g) * sometimes(n, 0.2, g)
    pan = torch.stack([signed(n, 0.1, 1.5, g), signed(n, 0.1, 1.5, g)], 1) * sometimes(n, 0.45, g).view(n, 1)
    pan = pan * (torch.rand(n, 2, generator=g) < 0.7).float()
    centre = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.5 * sometimes(n, 0.4, g).view(n, 1)
    c_rot, c_zoom, c_squash, c_shear, c_pan = (curves(n, t, g) for _ in range(5))
    on = affine.float().view(n, 1)
    angle = 2 * math.pi * turns.view(n, 1) * c_rot * on
    log_sx = (zoom.view(n, 1) * c_zoom + squash.view(n, 1) * c_squash) * on
    log_sy = (zoom.view(n, 1) * c_zoom - squash.view(n, 1) * c_squash) * on
    sh = shear.view(n, 1) * c_shear * on
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = torch.exp(-log_sx), torch.exp(-log_sy)
    # A = R(angle) @ diag(sx, sy) @ [[1, sh], [0, 1]]  (source = A @ output: zoom > 0 magnifies)
    a00, a01 = cos * sx, cos * sx * sh - sin * sy
    a10, a11 = sin * sx, sin * sx * sh + cos * sy
    ys, xs = torch.meshgrid(torch.linspace(-1 + 1 / h, 1 - 1 / h, h), torch.linspace(-1 + 1 / w, 1 - 1 / w, w), indexing="ij")
    u = (xs.view(1, 1, h, w) - centre[:, 0].view(n, 1, 1, 1))
    v = (ys.view(1, 1, h, w) - centre[:, 1].view(n, 1, 1, 1))
    e = lambda a: a.view(n, T, 1, 1)  # noqa: E731 -- per-frame scalars over the image
    sx_ = centre[:, 0].view(n, 1, 1, 1) + e(a00) * u + e(a01) * v - e(pan[:, 0:1] * c_pan * on)
    sy_ = centre[:, 1].view(n, 1, 1, 1) + e(a10) * u + e(a11) * v - e(pan[:, 1:2] * c_pan * on)

    # non-rigid: a smooth (bicubic) or piecewise (nearest: tiles flying apart) random field, or a twist
    cells = torch.randint(2, 7, (1,), generator=g).item()
    coarse = torch.randn(n, 2, cells, cells, generator=g)
    smooth_field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    tiles = F.interpolate(coarse, size=(h, w), mode="nearest")
    piecewise = (torch.rand(n, generator=g) < 0.3).view(n, 1, 1, 1)
    disp = torch.where(piecewise, tiles, smooth_field) * (0.05 + 0.4 * torch.rand(n, 1, 1, 1, generator=g))
    r = torch.sqrt(u * u + v * v)
    twist_profile = signed(n, 0.5, 6.0, g).view(n, 1, 1, 1) * torch.exp(-r * (0.5 + 3 * torch.rand(n, 1, 1, 1, generator=g)))
    twist = (torch.rand(n, generator=g) < 0.3).float().view(n, 1, 1, 1)
    c_field = curves(n, t, g) * field.float().view(n, 1)
    phi = e(c_field) * twist * twist_profile
    tu, tv = torch.cos(phi) * (sx_ - centre[:, 0].view(n, 1, 1, 1)) - torch.sin(phi) * (sy_ - centre[:, 1].view(n, 1, 1, 1)), \
        torch.sin(phi) * (sx_ - centre[:, 0].view(n, 1, 1, 1)) + torch.cos(phi) * (sy_ - centre[:, 1].view(n, 1, 1, 1))
    gx = centre[:, 0].view(n, 1, 1, 1) + tu + e(c_field) * (1 - twist) * disp[:, 0:1]
    gy = centre[:, 1].view(n, 1, 1, 1) + tv + e(c_field) * (1 - twist) * disp[:, 1:2]

    # what lies beyond the picture's edge: a fill colour, the edge pixels, a mirror or a repeat
    edge = torch.randint(4, (n, 1, 1, 1), generator=g)
    inside = ((gx.abs() <= 1) & (gy.abs() <= 1)).float()
    mirror = lambda a: 1 - torch.abs(torch.remainder(a + 1, 4) - 2)  # noqa: E731
    repeat = lambda a: torch.remainder(a + 1, 2) - 1  # noqa: E731
    gx = torch.where(edge == 2, mirror(gx), torch.where(edge == 3, repeat(gx), gx))
    gy = torch.where(edge == 2, mirror(gy), torch.where(edge == 3, repeat(gy), gy))
    grid = torch.stack([gx, gy], -1).view(n * T, h, w, 2)
    frames_in = video.transpose(1, 2).reshape(n * T, 3, h, w)
    out = F.grid_sample(frames_in, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out.view(n, T, 3, h, w).transpose(1, 2)
    fill = torch.where(torch.rand(n, 1, generator=g) < 0.5, -1.0, torch.rand(n, 3, generator=g) * 2 - 1)  # black half the time
    filled = inside.view(n, 1, T, h, w) * out + (1 - inside.view(n, 1, T, h, w)) * fill.view(n, 3, 1, 1, 1)
    moved = torch.where((edge == 0).view(n, 1, 1, 1, 1), filled, out)
    summary = {"turns": angle.mean(1) / (2 * math.pi), "zoom": ((log_sx + log_sy) / 2).mean(1),
               "squash": ((log_sx - log_sy) / 2).mean(1), "shear": sh.mean(1),
               "pan": (pan.view(n, 2, 1) * c_pan.view(n, 1, T) * on.view(n, 1, 1)).mean(2), "centre": centre,
               "twist": (twist.view(n) * twist_profile[:, 0, 0, 0].sign()) * c_field.abs().mean(1).gt(0.02),
               "piecewise": piecewise.view(n) & c_field.abs().mean(1).gt(0.02) & twist.view(n).eq(0),
               "smooth": ~piecewise.view(n) & c_field.abs().mean(1).gt(0.02) & twist.view(n).eq(0)}
    return torch.where((affine | field).view(n, 1, 1, 1, 1), moved, video), summary


# Motion codes (transformer.captions: coded): words with no meaning in the effect library's prompts
# (tests/unit/test_broad_corpus.py checks), so a base that lays out a coded change does not perform a
# named effect from its prompt; a LoRA learns which code an effect's prompt stands for.
_TURN = ("basalt", "cedar", "dune", "ember", "fern", "flint")  # -large .. -small, +small .. +large
_ZOOM = ("garnet", "granite", "jade", "kelp", "lichen", "marble")
_PAN = ("moss", "nickel", "onyx", "opal", "pebble", "quartz", "reed", "sage")  # 8 directions
_FAR, _SQUASH, _SHEAR = "slate", ("talc", "thistle"), ("umber", "vellum")
_CENTRE = ("willow", "yarrow", "zinc", "agate")  # off-centre quadrant
_TWIST, _PIECEWISE, _SMOOTH = ("birch", "clover"), "delta", "echo"
_COLOUR, _MASK, _SHAPE, _OTHER = "fable", "gamma", "helix", "kilo"
CODE_WORDS = (*_TURN, *_ZOOM, *_PAN, _FAR, *_SQUASH, *_SHEAR, *_CENTRE, *_TWIST, _PIECEWISE, _SMOOTH,
              _COLOUR, _MASK, _SHAPE, _OTHER)


def _graded(value: float, edges: tuple[float, float, float], words: tuple[str, ...]) -> list[str]:
    """One of 6 words for a signed value by its magnitude bin (none below the first edge)."""
    bin_ = sum(abs(value) >= e for e in edges)
    if bin_ == 0:
        return []
    return [words[3 - bin_] if value < 0 else words[2 + bin_]]


def motion_codes(summary: dict[str, torch.Tensor], use: dict[str, torch.Tensor], changed: torch.Tensor) -> list[str]:
    """Each clip's change as a caption of code words: the direction and size of its mean turn, zoom
    and pan, squash, shear, an off-centre pivot, the kind of non-rigid warp, whether it recolours (and
    behind a mask) or occludes. "" for neutral clips (they keep neutral captions)."""
    out = []
    for i in range(len(changed)):
        if not changed[i]:
            out.append("")
            continue
        words = _graded(summary["turns"][i].item(), (0.02, 0.1, 0.3), _TURN)
        words += _graded(summary["zoom"][i].item(), (0.05, 0.2, 0.5), _ZOOM)
        px, py = summary["pan"][i].tolist()
        if math.hypot(px, py) >= 0.05:
            words.append(_PAN[round(math.atan2(py, px) / (math.pi / 4)) % 8])
            words += [_FAR] if math.hypot(px, py) >= 0.4 else []
        for key, pair in (("squash", _SQUASH), ("shear", _SHEAR)):
            value = summary[key][i].item()
            words += [pair[value > 0]] if abs(value) >= 0.05 else []
        cx, cy = summary["centre"][i].tolist()
        if words and math.hypot(cx, cy) >= 0.1:
            words.append(_CENTRE[(cx > 0) + 2 * (cy > 0)])
        twist = summary["twist"][i].item()
        words += [_TWIST[twist > 0]] if twist else []
        words += [_PIECEWISE] if summary["piecewise"][i] else []
        words += [_SMOOTH] if summary["smooth"][i] else []
        words += [_COLOUR] if use["colour"][i] else []
        words += [_MASK] if use["colour"][i] and use["mask"][i] else []
        words += [_SHAPE] if use["shape"][i] else []
        out.append(" ".join(words) or _OTHER)
    return out


def recolour(video: torch.Tensor, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random stack of photometric ramps (each present with some probability, on its own curve)."""
    n, _, T, h, w = video.shape
    x = (video + 1) / 2  # [0, 1]
    shape = (n, 1, T, 1, 1)

    def ramp(p: float) -> torch.Tensor:
        return (curves(n, t, g) * sometimes(n, p, g).view(n, 1)).view(shape)

    # hue rotation (in YIQ) and a random channel mix
    angle = signed(n, 0.3, math.pi, g).view(n, 1, 1, 1, 1) * ramp(0.35)
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    q = torch.einsum("ij,njthw->nithw", yiq, x)
    i2 = torch.cos(angle) * q[:, 1:2] - torch.sin(angle) * q[:, 2:3]
    q2 = torch.sin(angle) * q[:, 1:2] + torch.cos(angle) * q[:, 2:3]
    x = torch.einsum("ij,njthw->nithw", torch.linalg.inv(yiq), torch.cat([q[:, :1], i2, q2], 1))
    mix = torch.rand(n, 3, 3, generator=g)
    mix = mix / mix.sum(2, keepdim=True)
    x = x + ramp(0.15) * (torch.einsum("nij,njthw->nithw", mix, x) - x)
    # tone: inversion, a wavy curve, contrast, saturation, brightness
    x = x + ramp(0.2) * (1 - 2 * x)
    k, phase = 1 + 3 * torch.rand(n, 1, 1, 1, 1, generator=g), 6.2832 * torch.rand(n, 1, 1, 1, 1, generator=g)
    x = x + ramp(0.15) * 0.5 * torch.sin(math.pi * k * x + phase)
    mean = x.mean((1, 3, 4), keepdim=True)
    x = mean + (x - mean) * (1 + ramp(0.25) * (3 * torch.rand(n, 1, 1, 1, 1, generator=g) - 1))
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * (1 + ramp(0.25) * (3 * torch.rand(n, 1, 1, 1, 1, generator=g) - 1))
    x = x + ramp(0.2) * signed(n, 0.1, 0.7, g).view(n, 1, 1, 1, 1)
    # blur (a coarser resolution) or sharpening
    flat = x.transpose(1, 2).reshape(n * T, 3, h, w)
    factor = 2 ** torch.randint(1, 4, (1,), generator=g).item()
    coarse = F.interpolate(F.avg_pool2d(flat, factor), size=(h, w), mode="bilinear", align_corners=False)
    coarse = coarse.view(n, T, 3, h, w).transpose(1, 2)
    x = x + ramp(0.25) * (1.6 * torch.rand(n, 1, 1, 1, 1, generator=g) - 0.6) * (coarse - x)
    # fade to any colour, and noise
    colour = torch.rand(n, 3, 1, 1, 1, generator=g)
    x = x + ramp(0.3) * (colour - x)
    x = x + ramp(0.08) * 0.4 * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1) * 2 - 1


def sweep_mask(n: int, t: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """(n, 1, T, H, W) in [0, 1], 0 at t = 0: a soft straight edge sweeping across in a random direction,
    or a circle growing from (or closing onto) a random point."""
    T = len(t)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    direction = 2 * math.pi * torch.rand(n, generator=g)
    along = (torch.cos(direction).view(n, 1, 1) * xs + torch.sin(direction).view(n, 1, 1) * ys) / math.sqrt(2)  # [-1, 1]
    centre = torch.rand(n, 2, generator=g) * 2 - 1
    radius = torch.sqrt((xs - centre[:, 0].view(n, 1, 1)) ** 2 + (ys - centre[:, 1].view(n, 1, 1)) ** 2) / 2.83
    closing = (torch.rand(n, generator=g) < 0.5).view(n, 1, 1)
    distance = torch.where((torch.rand(n, generator=g) < 0.5).view(n, 1, 1), (along + 1) / 2,
                           torch.where(closing, 1 - radius, radius))  # [0, 1]: where the mask arrives last
    soft = 0.02 + 0.2 * torch.rand(n, 1, 1, 1, generator=g)
    front = curves(n, t, g).abs().clamp(0, 1).view(n, T, 1, 1) * (1 + soft)
    mask = ((front - distance.unsqueeze(1)) / soft).clamp(0, 1)
    return mask.unsqueeze(1)


def occlude(video: torch.Tensor, t: torch.Tensor, on: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A solid shape (box or ellipse) of a random colour that grows in while moving along a line."""
    n, _, T, h, w = video.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    start, end = torch.rand(n, 2, generator=g) * 2 - 1, torch.rand(n, 2, generator=g) * 2 - 1
    size = 0.15 + 0.85 * torch.rand(n, 2, generator=g)
    c = curves(n, t, g).abs().clamp(0, 1)
    cx = (start[:, 0:1] + (end[:, 0:1] - start[:, 0:1]) * c).view(n, T, 1, 1)
    cy = (start[:, 1:2] + (end[:, 1:2] - start[:, 1:2]) * c).view(n, T, 1, 1)
    rx, ry = (size[:, 0:1] * c).view(n, T, 1, 1) + 1e-4, (size[:, 1:2] * c).view(n, T, 1, 1) + 1e-4
    dx, dy = (xs - cx) / rx, (ys - cy) / ry
    ellipse = (torch.rand(n, generator=g) < 0.5).view(n, 1, 1, 1)
    inside = torch.where(ellipse, dx * dx + dy * dy <= 1, (dx.abs() <= 1) & (dy.abs() <= 1)).float()
    inside = inside * on.float().view(n, 1, 1, 1)
    colour = (torch.rand(n, 3, generator=g) * 2 - 1).view(n, 3, 1, 1, 1)
    return video + inside.unsqueeze(1) * (colour - video)


def corpus_clips(kind: str, bank: torch.Tensor, n: int, frames: int, size: int,
                 generator: torch.Generator, codes: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n clips of a corpus ("neutral" or "broad") and which of them carry a change beyond neutral motion
    (`codes`: see broad_clips)."""
    if kind == "neutral":
        if codes is not None:
            codes.extend([""] * n)
        return neutral_clips(bank, n, frames, size, generator), torch.zeros(n, dtype=torch.bool)
    return broad_clips(bank, n, frames, size, generator, codes)
