"""The base world's training data: train-split photos, animated.

Two corpora (recipe key `corpus`):
- `neutral`: mild, effect-free motion (small drift, slight breathing zoom, lighting flicker, sensor
  noise) -- the world of sessions 1-15, whose codec and transformer never saw anything move far.
- `broad`: a general video prior, as a real Wan has one. A quarter of the clips are neutral; the rest
  add random *generic* change to a neutral clip: global affine motion (rotation either way, zoom in
  and out, pans, shear, squash; slow to fast, eased or oscillating), smooth or piecewise non-rigid
  warps and polar twists, occluding shapes, and strong photometric ramps (hue rotation, inversion,
  tone curves, channel mixes, fades to any colour, contrast / saturation / brightness, blur and
  sharpening, noise), globally or behind a sweeping or growing mask, alone or combined, each on its
  own time curve (so sequenced or simultaneous). All parameters are drawn from continuous ranges.

Strictly NOT the effect library: nothing here imports `p2e_cli.effects`, and captions are generic
("the scene changes"), never naming a motion, so the base can move and recolour content but does
not perform a named effect from its text; choosing *which* change is what a LoRA adds. Held-out
photos are never used here.

Clips are made in torch from a per-step seed, so a training run can be resumed exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CAPTIONS = (
    "a photo",
    "a short video of a still scene",
    "the camera drifts slowly",
    "gentle natural motion",
    "a calm scene with subtle movement",
    "a picture with a slight handheld camera",
    "a still image coming to life",
    "soft changes in the light",
    "a quiet moment, barely moving",
    "slow camera movement over the scene",
    "the scene breathes gently",
    "a steady shot with small motion",
    "an ordinary clip of the subject",
    "natural footage, nothing happens",
    "a slightly shaky video",
    "ambient motion in a calm shot",
)
# Broad clips' captions: that something changes, never what (the LoRA's job).
CHANGE_CAPTIONS = (
    "a video",
    "the scene changes",
    "something happens to the picture",
    "a dynamic shot",
    "the image transforms over time",
    "a clip with a lot going on",
    "the picture does something",
    "an animated image",
    "a moving picture",
    "a short clip where things change",
)
ALL_CAPTIONS = CAPTIONS + CHANGE_CAPTIONS
CORPORA = ("neutral", "broad")


def photo_bank(split: str = "train", size: int = 128) -> torch.Tensor:
    """All photos of a split as one (N, 3, size, size) tensor in [-1, 1] (views are cropped from it)."""
    import numpy as np

    from ..photos import load_photo, photo_names

    images = np.stack([load_photo(name, size) for name in photo_names(split)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def neutral_clips(bank: torch.Tensor, n: int, frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """n clips (n, 3, frames, size, size) in [-1, 1]: a random view of a random photo that drifts,
    breathes and flickers slightly. Frame 0 is the view itself."""
    video, noise = _neutral_motion(bank, n, frames, size, generator)
    return add_grain(video, noise, generator)


def add_grain(video: torch.Tensor, noise: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sensor noise of per-clip strength `noise` on every frame but the conditioning frame 0."""
    grain = torch.randn(video.shape, generator=generator) * noise.view(-1, 1, 1, 1, 1)
    grain[:, :, 0] = 0  # the conditioning frame stays the clean view
    return (video + grain).clamp(-1, 1)


def _neutral_motion(bank: torch.Tensor, n: int, frames: int, size: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """neutral_clips before grain: the clean clips and each clip's grain strength."""
    g = generator
    x = bank[torch.randint(len(bank), (n,), generator=g)]
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    # colour jitter per clip (brightness, contrast, saturation): variety for a codec, not an effect
    gray = x.mean(1, keepdim=True)
    sat = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
    con = 0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    bri = 0.1 * (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1)
    x = ((gray + sat * (x - gray)) * con + bri).clamp(-1, 1)

    scale = 0.45 + 0.5 * torch.rand(n, generator=g)  # view covers 45-95% of the photo
    centre = (torch.rand(n, 2, generator=g) * 2 - 1) * (1 - scale).unsqueeze(1)
    drift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.08 * scale.unsqueeze(1)
    phase = torch.rand(n, generator=g) * 6.2832
    breath = 0.025 * torch.rand(n, generator=g)
    flicker = 0.04 * torch.rand(n, generator=g)
    noise = 0.01 + 0.015 * torch.rand(n, generator=g)

    t = torch.linspace(0, 1, frames)
    s = scale.view(n, 1) * (1 + breath.view(n, 1) * torch.sin(phase.view(n, 1) + 6.2832 * t))
    s = s / (1 + breath.view(n, 1) * torch.sin(phase.view(n, 1)))  # frame 0 is exactly the view
    theta = torch.zeros(n, frames, 2, 3)
    theta[..., 0, 0] = s
    theta[..., 1, 1] = s
    theta[..., :, 2] = centre.view(n, 1, 2) + drift.view(n, 1, 2) * t.view(1, frames, 1)
    grid = F.affine_grid(theta.view(n * frames, 2, 3), (n * frames, 3, size, size), align_corners=False)
    source = x.unsqueeze(1).expand(n, frames, *x.shape[1:]).reshape(n * frames, *x.shape[1:])
    video = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    video = video.view(n, frames, 3, size, size).transpose(1, 2)
    light = 1 + flicker.view(n, 1) * torch.sin(phase.view(n, 1) * 3 + 9.0 * t) - flicker.view(n, 1) * torch.sin(phase.view(n, 1) * 3)
    video = (video + 1) * light.view(n, 1, frames, 1, 1) - 1
    return video, noise


def captions(n: int, generator: torch.Generator, changed: torch.Tensor | None = None) -> list[str]:
    """A generic caption per clip: a neutral one, or (where `changed`) one saying only that something changes."""
    neutral = torch.randint(len(CAPTIONS), (n,), generator=generator).tolist()
    if changed is None:
        return [CAPTIONS[i] for i in neutral]
    change = torch.randint(len(CHANGE_CAPTIONS), (n,), generator=generator).tolist()
    return [CHANGE_CAPTIONS[c] if m else CAPTIONS[i] for i, c, m in zip(neutral, change, changed.tolist())]
