"""Position channels of a world codec (vae.position_channels): the grid, its error measure, and a micro VAE whose
encoder learns to write them (and one without the loss, which does not)."""

import math
from types import SimpleNamespace

import pytest
import torch

from p2e_cli.errors import P2EError
from p2e_cli.recipes import load_recipe
from p2e_cli.world.build import Checkpoints, codec_banks, make_vae, train, vae_loss_fn
from p2e_cli.world.corpus import photo_bank
from p2e_cli.world.position import position_grid, position_rmse
from p2e_cli.world.quality import heldout_neutral_clips


def test_position_grid_runs_across_the_frame_and_stays_still_in_time():
    grid = position_grid(torch.zeros(2, 7, 3, 4, 5))
    assert grid.shape == (2, 4, 3, 4, 5)
    x, y, cx, cy = grid[0, :, 0]
    assert torch.allclose(x[0], torch.linspace(-1, 1, 5)) and torch.allclose(y[:, 0], torch.linspace(-1, 1, 4))
    assert torch.allclose(cx, torch.cos(math.pi * x)) and torch.allclose(cy, torch.cos(math.pi * y))
    assert torch.equal(grid[:, :, 0], grid[:, :, 2])
    assert torch.equal(position_grid(torch.zeros(1, 7, 1, 4, 5), 2), grid[:1, :2, :1])


class _Codec:
    """A stand-in VAE whose encoder writes `write(latents)` into every latent channel."""

    def __init__(self, write):
        self.write, self.device, self.dtype = write, torch.device("cpu"), torch.float32

    def encode(self, clips):
        latents = torch.zeros(len(clips), 4, 2, clips.shape[-2] // 4, clips.shape[-1] // 4)
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: self.write(latents)))


def test_position_rmse_is_zero_only_for_a_codec_that_writes_the_grid():
    clips = torch.zeros(3, 3, 5, 32, 32)
    exact = _Codec(lambda z: torch.cat([z[:, :2], position_grid(z, 2)], 1))
    assert position_rmse(exact, clips, 2) < 1e-6
    assert position_rmse(_Codec(lambda z: z), clips, 2) > 0.6  # writes nothing
    swapped = _Codec(lambda z: torch.cat([z[:, :2], position_grid(z, 2).flip(1)], 1))  # x and y exchanged
    assert position_rmse(swapped, clips, 2) > 0.6
    assert position_rmse(exact, clips, 4) > 0.4  # the cos channels are not there


def test_position_channels_must_leave_content_channels():
    with pytest.raises(P2EError, match="position_channels"):
        make_vae(load_recipe("world-micro", ["vae.z_dim=4", "vae.position_channels=4"]))


def test_the_codec_learns_to_write_its_position_channels(tmp_path):
    """world-micro's VAE stage with two position channels, 40 steps: its encoder writes the grid on held-out
    photos' clips within a sixth of the frame; the same stage without the loss writes nothing of the kind.
    (A build records the channels for `p2e world eval`: tests/cli/test_world_eval_cli.py.)"""
    clips = heldout_neutral_clips(4, 5, 32)

    def trained(weight: float) -> float:
        recipe = load_recipe("world-micro", ["vae.z_dim=6", "vae.position_channels=2", "vae.steps=40",
                                              f"vae.position_weight={weight}"])
        torch.manual_seed(recipe.seed)
        vae = make_vae(recipe)
        train("vae", vae, vae_loss_fn(vae, recipe, codec_banks(recipe, photo_bank("train", 2 * recipe.size))),
              steps=recipe.vae.steps, lr=recipe.vae.lr, warmup=recipe.vae.warmup_steps,
              checkpoints=Checkpoints(tmp_path / str(weight)), every=recipe.vae.steps)
        return position_rmse(vae.eval(), clips, recipe.vae.position_channels)

    learned, blind = trained(1.0), trained(0.0)
    assert learned < 0.3 < 0.6 < blind, (learned, blind)
