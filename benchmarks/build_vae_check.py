"""The VAE of a world build in progress, from its checkpoint: is it on course? (issue 29)

    python benchmarks/build_vae_check.py BUILD [--effects]

Loads BUILD/.build/vae.ckpt (or the finished stage's `vae`) into the VAE of the recipe the build was started with
(BUILD/.build/recipe.json) and prints what `p2e world eval` prints of a finished world's codec
(`world.quality.codec_report`): PSNR on 8 held-out neutral clips, the position channels' RMS error on them (when the
recipe has any), and with --effects every library effect's round trip on the identification photos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from p2e_cli.recipes import parse_recipe
from p2e_cli.world.build import Checkpoints, make_vae
from p2e_cli.world.quality import codec_report, heldout_neutral_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the -o folder of p2e world build")
    parser.add_argument("--effects", action="store_true", help="also every effect's round trip (about a minute)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoints = Checkpoints(args.build / ".build")
    recipe = parse_recipe(json.loads((checkpoints.folder / "recipe.json").read_text()))
    vae = make_vae(recipe).eval()
    step = checkpoints.load("vae" if checkpoints.done("vae") else "vae.ckpt", vae)
    with torch.no_grad():
        report = codec_report(vae, heldout_neutral_clips(8, recipe.frames, recipe.size), recipe.vae.position_channels,
                              effects=args.effects)
    report.pop("vae_psnr_effects", None)  # the summary, not 89 figures
    out = {"step": step, **report}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
