"""Which VAE shape could reach the tiny world's 28 dB goal? Short VAE-only trainings side by side.

    python benchmarks/vae_capacity.py --steps 500 --variant shipped: --variant z32:vae.z_dim=32

Each variant = recipes/world-tiny.yaml plus its overrides, with `vae.steps` set to --steps (so the
cosine schedule completes): trains the VAE stage exactly as `p2e world build` does (same loss,
photos and seed) in a temporary folder, then prints its parameter count, seconds per step and the
reconstruction PSNR on the held-out neutral clips `p2e world eval` uses (8 clips). Short runs rank
shapes; they do not predict the full 4000-step figure (the shipped VAE: 24.82 dB). `--every K` also
prints the held-out PSNR every K steps (mid-schedule, so below what the finished cosine run reaches).
`--effects` also prints the round trip of every library effect's exact ground truth on the held-out
identification photos (median / p10 / min dB: the figures issue 29 gates the world on). A variant with
vae.position_channels also prints how exactly its encoder writes them (p2e_cli/world/position.py).
Runs on the GPU when there is one (the same loop `p2e world build` uses).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    from p2e_cli.recipes import load_recipe
    from p2e_cli.world.build import Checkpoints, codec_banks, make_vae, train, vae_loss_fn
    from p2e_cli.world.corpus import photo_bank
    from p2e_cli.metrics import vae_psnr
    from p2e_cli.world.quality import heldout_neutral_clips

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,key=value (repeatable)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--every", type=int, default=0, help="also print the held-out PSNR every K steps")
    parser.add_argument("--effects", action="store_true", help="also print the VAE round trip of every library effect")
    parser.add_argument("--save", type=Path, help="write each trained VAE, with its latent statistics, to SAVE/NAME "
                                                  "(an AutoencoderKLWan folder: benchmarks/transport_probe.py --vae)")
    args = parser.parse_args()
    variants = [v.split(":", 1) for v in args.variant or ["shipped:"]]
    for name, overrides in variants:
        # overrides split at commas outside brackets: vae.temporal_downsample=[true,false],vae.z_dim=48
        recipe = load_recipe("world-tiny", [o for o in re.split(r",(?![^\[]*\])", overrides) if o] + [f"vae.steps={args.steps}"])
        torch.manual_seed(recipe.seed)
        bank = photo_bank("train", size=2 * recipe.size)
        vae = make_vae(recipe)
        clips = heldout_neutral_clips(args.clips, recipe.frames, recipe.size)
        loss_at = vae_loss_fn(vae, recipe, codec_banks(recipe, bank))

        report_seconds = 0.0  # kept out of s/step

        def loss_with_reports(step: int) -> torch.Tensor:
            nonlocal report_seconds
            if args.every and step and step % args.every == 0:
                began = time.perf_counter()
                print(f"{name}: step {step}  held-out PSNR {vae_psnr(vae.eval(), clips):.2f} dB  "
                      f"({began - start:.0f} s)", flush=True)
                vae.train()
                report_seconds += time.perf_counter() - began
            return loss_at(step)

        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train("vae", vae, loss_with_reports, steps=recipe.vae.steps, lr=recipe.vae.lr,
                  warmup=recipe.vae.warmup_steps, checkpoints=Checkpoints(Path(tmp)), every=recipe.vae.steps)
            per_step = (time.perf_counter() - start - report_seconds) / recipe.vae.steps
        value = vae_psnr(vae.eval(), clips)
        params = sum(p.numel() for p in vae.parameters()) / 1e6
        print(f"{name}: {overrides or '(recipe)'}  {params:.2f}M parameters, {per_step:.2f} s/step, "
              f"held-out PSNR {value:.2f} dB after {recipe.vae.steps} steps", flush=True)
        if recipe.vae.position_channels:
            from p2e_cli.world.position import position_rmse

            print(f"{name}: position channels RMS error {position_rmse(vae, clips, recipe.vae.position_channels):.4f} "
                  "(held-out clips; the frame spans 2)", flush=True)
        if args.save:
            from p2e_cli.world.build import latent_statistics

            mean, std = latent_statistics(vae, recipe, bank)
            vae.register_to_config(latents_mean=mean, latents_std=std)
            vae.save_pretrained(args.save / name, safe_serialization=True)
        if args.effects:
            from p2e_cli.identify import psnr_summary, vae_effect_psnr

            per_effect = vae_effect_psnr(vae, recipe.size, recipe.frames)
            worst = ", ".join(f"{k} {v:.1f}" for k, v in sorted(per_effect.items(), key=lambda kv: kv[1])[:5])
            figures = "  ".join(f"{k.removeprefix('vae_psnr_effects_')} {v:.2f}" for k, v in psnr_summary(per_effect).items())
            print(f"{name}: effects (dB) {figures}; worst: {worst}", flush=True)


if __name__ == "__main__":
    main()
