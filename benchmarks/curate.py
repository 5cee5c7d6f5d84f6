"""Benchmark the effect library and `curate synth`: clips per second at 17 x 64 x 64.

Prints three figures:
  render   procedural clips rendered in memory (every train effect, random views and jittered params)
  synth    clips synthesised into a fresh registry (render + lossless safetensors + SQLite record)
  rerun    the same synth again (every clip already present: hashing and dedupe only)
  encode   latents/s: VAE encoding of synthesised clips (what `curate encode` does per clip) with a
           randomly initialised VAE of the tiny world's shape (speed does not depend on the weights)

Run: python benchmarks/curate.py [--clips-per-effect 2] [--frames 17] [--size 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-per-effect", type=int, default=2)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    from p2e_cli import curate
    from p2e_cli.effects import effects
    from p2e_cli.photos import load_photo, photo_names
    from p2e_cli.registry import open_registry

    selection = effects("train")
    size = (args.size, args.size)
    n = len(selection) * args.clips_per_effect
    for name in photo_names("all"):  # decode the photos first: a one-off cost, not per clip
        load_photo(name, args.size)

    start = time.perf_counter()
    for effect in selection:
        for index in range(args.clips_per_effect):
            curate.synth_clip(effect, index, 0, args.frames, size)
    render_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as home:
        reg = open_registry(Path(home))
        start = time.perf_counter()
        report = curate.synth(reg, selection, args.clips_per_effect, args.frames, size, seed=0)
        synth_s = time.perf_counter() - start
        start = time.perf_counter()
        rerun = curate.synth(reg, selection, args.clips_per_effect, args.frames, size, seed=0)
        rerun_s = time.perf_counter() - start
        reg.close()
    assert len(report.added) == n and len(rerun.existing) == n

    shape = f"{args.frames}x{args.size}x{args.size}"
    print(f"effects: {len(selection)} train effects x {args.clips_per_effect} clips = {n} clips of {shape}")
    print(f"render: {n / render_s:8.1f} clips/s  ({1000 * render_s / n:.1f} ms/clip, in memory)")
    print(f"synth:  {n / synth_s:8.1f} clips/s  ({1000 * synth_s / n:.1f} ms/clip, into the registry)")
    print(f"rerun:  {n / rerun_s:8.1f} clips/s  (all {n} already present, nothing written)")
    print(f"encode: {encode_rate(selection, args):8.1f} latents/s (tiny-world VAE shape, batches of 8)")


def encode_rate(selection, args) -> float:
    import torch

    from p2e_cli import curate
    from p2e_cli.encode import to_video_tensor
    from p2e_cli.recipes import load_recipe
    from p2e_cli.world.build import make_vae

    vae = make_vae(load_recipe("world-tiny")).eval()
    settings = {"frames": args.frames, "size": [args.size, args.size]}
    clips = [curate.synth_clip(e, 0, 0, args.frames, (args.size, args.size))[0] for e in selection[:32]]
    videos = torch.stack([to_video_tensor(c, settings) for c in clips])
    with torch.no_grad():
        vae.encode(videos[:8])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(videos), 8):
            vae.encode(videos[i:i + 8]).latent_dist.mode()
    return len(videos) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
