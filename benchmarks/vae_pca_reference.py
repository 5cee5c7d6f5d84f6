"""A linear yardstick for the tiny world's VAE goal: patch PCA with the VAE's own latent budget.

    python benchmarks/vae_pca_reference.py --z 16 32

The world's AutoencoderKLWan keeps z_dim numbers per (s x s)-pixel block of the first frame (encoded
alone, causally) and per (t x s x s) block of the later frames (s, t: its spatial and temporal
factors). This fits a PCA per block on train-photo neutral clips and keeps the top z components
-- a linear codec with exactly that budget -- then prints its PSNR on the held-out neutral clips
`p2e world eval` scores the VAE on (the same clips, the same PSNR). A VAE below this figure is
limited by its training or architecture, not by its latent size.

    python benchmarks/vae_pca_reference.py --corpus broad --effects --set vae.temporal_downsample=[true,false]

With --effects the PCA is fit on the recipe's corpus (or --corpus) and also scored on every library
effect's exact ground truth on the held-out identification photos (median / p10 / min over effects,
as `p2e world eval` reports the VAE): what a linear codec of this budget keeps of the effects.
"""

from __future__ import annotations

import argparse

import torch


def to_blocks(x: torch.Tensor, t: int, s: int) -> torch.Tensor:
    """(n, c, T, H, W) -> (n * T/t * H/s * W/s, c * t * s * s): one row per latent position."""
    n, c, T, h, w = x.shape
    x = x.reshape(n, c, T // t, t, h // s, s, w // s, s).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(-1, c * t * s * s)


def from_blocks(rows: torch.Tensor, shape: tuple[int, ...], t: int, s: int) -> torch.Tensor:
    n, c, T, h, w = shape
    x = rows.reshape(n, T // t, h // s, w // s, c, t, s, s).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(shape)


def main() -> None:
    from p2e_cli.recipes import load_recipe
    from p2e_cli.world.build import make_vae, step_generator
    from p2e_cli.world.corpus import neutral_clips, photo_bank
    from p2e_cli.metrics import psnr
    from p2e_cli.world.quality import heldout_neutral_clips

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z", type=int, nargs="+", default=[16, 32], help="latent channels to keep")
    parser.add_argument("--recipe", default="world-tiny")
    parser.add_argument("--train-clips", type=int, default=256)
    parser.add_argument("--corpus", default=None, help="fit on this corpus (neutral, broad; default: neutral)")
    parser.add_argument("--effects", action="store_true", help="also score every library effect's ground truth")
    parser.add_argument("--set", action="append", default=[], help="recipe override (repeatable)")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, args.set)
    config = make_vae(recipe).config  # the factors the world's own VAE is built with
    s, t = config.scale_factor_spatial, config.scale_factor_temporal
    if (recipe.frames - 1) % t:
        raise SystemExit(f"frames - 1 ({recipe.frames - 1}) is not a multiple of the temporal factor {t}")
    bank = photo_bank("train", 2 * recipe.size)
    from p2e_cli.world.change import corpus_clips

    kind = args.corpus or "neutral"
    train = torch.cat([corpus_clips(kind, bank, 32, recipe.frames, recipe.size, step_generator(recipe.seed, "pca", i))[0]
                       if kind != "neutral" else
                       neutral_clips(bank, 32, recipe.frames, recipe.size, step_generator(recipe.seed, "pca", i))
                       for i in range(args.train_clips // 32)])
    test = heldout_neutral_clips(8, recipe.frames, recipe.size)
    effects = effect_clips(recipe) if args.effects else None
    print(f"{args.recipe}: {s}x spatial, {t}x temporal; PCA fit on {len(train)} train-photo {kind} clips, "
          f"scored on {len(test)} held-out clips")
    parts = []  # the causal first frame, then the blocks of later frames: (frames, step, mean, principal axes)
    for frames, step in ((slice(0, 1), 1), (slice(1, recipe.frames), t)):
        rows = to_blocks(train[:, :, frames], step, s)
        mean = rows.mean(0)
        parts.append((frames, step, mean, torch.linalg.svd(rows - mean, full_matrices=False).Vh))
    def code(x: torch.Tensor, z: int) -> torch.Tensor:
        recon = torch.empty_like(x)
        for frames, step, mean, axes in parts:
            basis, part = axes[:z], x[:, :, frames]
            coded = (to_blocks(part, step, s) - mean) @ basis.T @ basis + mean
            recon[:, :, frames] = from_blocks(coded, tuple(part.shape), step, s)
        return recon.clamp(-1, 1)

    for z in args.z:
        recon = code(test, z)
        print(f"z {z}: held-out PSNR {psnr(recon, test):.2f} dB (first frame {psnr(recon[:, :, :1], test[:, :, :1]):.2f}, "
              f"later frames {psnr(recon[:, :, 1:], test[:, :, 1:]):.2f})", flush=True)
        if effects is not None:
            from p2e_cli.identify import psnr_summary

            per_effect = {name: psnr(code(x, z), x) for name, x in effects.items()}
            figures = "  ".join(f"{k.removeprefix('vae_psnr_effects_')} {v:.2f}" for k, v in psnr_summary(per_effect).items())
            print(f"z {z}: library effects (dB) {figures}", flush=True)


def effect_clips(recipe) -> dict[str, torch.Tensor]:
    """{effect: (photos, 3, T, H, W) in [-1, 1]}: every library effect on the identification photos."""
    import numpy as np

    from p2e_cli import effects as fx
    from p2e_cli.identify import PHOTOS, candidates

    out = {}
    for i, name in enumerate(fx.effect_names()):
        clips = np.stack([candidates(photo, recipe.size, recipe.frames)[i] for photo in PHOTOS])
        out[name] = torch.from_numpy(clips).float().permute(0, 4, 1, 2, 3) / 127.5 - 1.0
    return out


if __name__ == "__main__":
    main()
