"""Metrics shared by training logs, evaluation and world checks.

Effect identification (issue 29): is a rendered clip the effect it was meant to be? Rank it against
the exact ground truth of every library effect plus the still photo, all from the same first frame:

    render (T, H, W, 3) ----\\
                             low-pass each frame 1..T-1 (Gaussian, sigma IDENT_SIGMA px)
    truths (K, T, H, W, 3) --/   -> mean squared difference per candidate -> rank of the target

The low-pass forgives per-pixel grain (a world's sampling noise averages out over a few pixels)
but keeps everything an effect is made of at the scale of the picture: where content went
(rotation, zoom, a slide), its shape, its colour. A blurred, darkened or dissolved clip is far from
the sharp, moving truth and nearer a blur, fade or dissolve effect (tests/unit/test_metrics.py).
"""

from __future__ import annotations

import numpy as np

IDENT_SIGMA = 1.0  # px at the render's size; tests/unit/test_metrics.py shows why


def low_pass(frames: np.ndarray, sigma: float = IDENT_SIGMA) -> np.ndarray:
    """Gaussian blur of (..., H, W, C) frames over H and W, in float64 (edges reflected)."""
    from scipy.ndimage import gaussian_filter

    frames = np.asarray(frames, dtype=np.float64)
    if sigma <= 0:
        return frames
    return gaussian_filter(frames, [0.0] * (frames.ndim - 3) + [sigma, sigma, 0.0], mode="reflect", truncate=3.0)


def identification_distances(render: np.ndarray, truths: np.ndarray, sigma: float = IDENT_SIGMA) -> np.ndarray:
    """Distance of a clip (T, H, W, 3) to each of K candidate clips (K, T, H, W, 3), uint8 or [0, 255]
    floats: the mean squared difference of their low-passed frames 1..T-1 (frame 0 is the shared
    input image). Returns K distances in (0-255 units)^2."""
    render, truths = np.asarray(render), np.asarray(truths)
    if truths.shape[1:] != render.shape:
        raise ValueError(f"candidates {truths.shape[1:]} and render {render.shape} differ in shape")
    a = low_pass(render[1:], sigma)
    b = low_pass(truths[:, 1:], sigma)
    return ((b - a[None]) ** 2).reshape(len(b), -1).mean(1)


def identification_rank(render: np.ndarray, truths: np.ndarray, target: int, sigma: float = IDENT_SIGMA) -> int:
    """1-based rank of candidate `target` among all candidates by identification distance (ties count
    against the target)."""
    d = identification_distances(render, truths, sigma)
    return int(np.sum(d <= d[target]))


# PSNR: the codec's reconstruction and renders against their input


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors in [-1, 1] (peak-to-peak 2)."""
    import torch

    mse = (a.float() - b.float()).pow(2).mean().clamp_min(1e-12)
    return float(10 * torch.log10(4.0 / mse))


def vae_psnr(vae, clips: "torch.Tensor", chunk: int = 4) -> float:
    """Mean reconstruction PSNR over clips (B, 3, T, H, W)."""
    import torch

    values = []
    with torch.no_grad():
        for i in range(0, len(clips), chunk):
            x = clips[i:i + chunk].to(vae.device)
            values.append(psnr(vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1), x))
    return sum(values) / len(values)


def frames_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8 images/clips."""
    mse = max(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)), 1e-10)
    return float(10 * np.log10(255.0 ** 2 / mse))
