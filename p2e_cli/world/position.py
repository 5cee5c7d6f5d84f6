"""Position channels: a world codec can write each latent pixel's place in the frame into its last few latent
channels (recipe `vae.position_channels`), so that the transformer, whose RoPE attention knows only relative
offsets, can lay out motions that depend on where a pixel is -- turns, zooms, a melt that starts at the top
(benchmarks/transport_probe.py measured this, docs/results.md Session 23). The channels are constant over time
and trained into the encoder by an auxiliary loss: its convolutions read them off the zero padding, exactly near
the borders and blurred in the middle of a 64x64 frame (attention, with no position of its own, adds none;
docs/results.md Session 24). The stock AutoencoderKLWan and WanImageToVideoPipeline carry them like any other
latent channel.
"""

from __future__ import annotations

import math

import torch

MAX_CHANNELS = 4


def position_grid(latents: torch.Tensor, channels: int = MAX_CHANNELS) -> torch.Tensor:
    """(x, y, cos pi x, cos pi y)[:channels] of every pixel of `latents` (B, C, F, h, w), x and y running from -1
    to 1 across the frame: (B, channels, F, h, w), on latents' device and dtype."""
    b, _, f, h, w = latents.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xs, ys, torch.cos(math.pi * xs), torch.cos(math.pi * ys)])[:channels]
    return grid[None, :, None].expand(b, -1, f, -1, -1).to(latents)


def position_loss(mean: torch.Tensor, channels: int) -> torch.Tensor:
    """MSE of an encoder mean's last `channels` latent channels against their position grid."""
    return torch.nn.functional.mse_loss(mean[:, -channels:], position_grid(mean, channels))


@torch.no_grad()
def position_rmse(vae, clips: torch.Tensor, channels: int, chunk: int = 4) -> float:
    """Root mean square error of the position channels a VAE's encoder writes for `clips` (B, 3, F, H, W) in
    [-1, 1], in the grid's units (the frame spans 2): 0 for an exact codec, ~0.6 for one that writes zeros."""
    errors = []
    for i in range(0, len(clips), chunk):
        mean = vae.encode(clips[i:i + chunk].to(vae.device, vae.dtype)).latent_dist.mode().float()
        errors.append(position_loss(mean, channels) * len(mean))
    return math.sqrt(float(sum(errors)) / len(clips))
