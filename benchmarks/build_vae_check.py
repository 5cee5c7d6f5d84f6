"""The VAE of a world build in progress, from its checkpoint: is it on course? (issue 29)

    python benchmarks/build_vae_check.py BUILD [--recipe world-tiny] [--effects]

Loads BUILD/.build/vae.ckpt (or the finished stage's `vae`) into the recipe's VAE and prints, as `p2e world eval`
measures a finished world: PSNR on 8 held-out neutral clips, the position channels' RMS error on them (when the
recipe has any), and with --effects every library effect's round trip on the identification photos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from p2e_cli import identify
from p2e_cli.metrics import vae_psnr
from p2e_cli.recipes import load_recipe
from p2e_cli.world.build import Checkpoints, make_vae
from p2e_cli.world.position import position_rmse
from p2e_cli.world.quality import heldout_neutral_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the -o folder of p2e world build")
    parser.add_argument("--recipe", default="world-tiny", help="the recipe it was started with")
    parser.add_argument("--effects", action="store_true", help="also every effect's round trip (about a minute)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    vae = make_vae(recipe).eval()
    checkpoints = Checkpoints(args.build / ".build")
    step = recipe.vae.steps if checkpoints.done("vae") else checkpoints.load("vae.ckpt", vae)
    if checkpoints.done("vae"):
        checkpoints.load("vae", vae)
    clips = heldout_neutral_clips(8, recipe.frames, recipe.size)
    with torch.no_grad():
        out = {"step": step, "neutral_psnr": vae_psnr(vae, clips)}
        if recipe.vae.position_channels:
            out["position_rmse"] = position_rmse(vae, clips, recipe.vae.position_channels)
        if args.effects:
            out.update(identify.psnr_summary(identify.vae_effect_psnr(vae, recipe.size, recipe.frames)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
