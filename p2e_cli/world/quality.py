"""Quality figures of a world, all on held-out photos (never trained on):
VAE reconstruction PSNR on neutral clips, and the base's flow-matching validation loss on neutral
clips vs effect clips (a base must animate images, not already perform the effects).
"""

from __future__ import annotations

import torch

from .build import step_generator
from .corpus import neutral_clips, photo_bank


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).pow(2).mean().clamp_min(1e-12)
    return float(10 * torch.log10(4.0 / mse))


def heldout_neutral_clips(n: int, frames: int, size: int, seed: int = 1234) -> torch.Tensor:
    return neutral_clips(photo_bank("heldout", 2 * size), n, frames, size, step_generator(seed, "eval", 0))


@torch.no_grad()
def vae_psnr(vae, clips: torch.Tensor, chunk: int = 4) -> float:
    """Mean reconstruction PSNR over clips (B, 3, T, H, W)."""
    values = []
    for i in range(0, len(clips), chunk):
        x = clips[i:i + chunk]
        values.append(psnr(vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1), x))
    return sum(values) / len(values)
