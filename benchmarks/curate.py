"""Benchmark the effect library and `curate synth`: clips per second at 17 x 64 x 64.

Prints three figures:
  render   procedural clips rendered in memory (every train effect, random views and jittered params)
  synth    clips synthesised into a fresh registry (render + lossless safetensors + SQLite record)
  rerun    the same synth again (every clip already present: hashing and dedupe only)
Latents/s (curate encode) is measured once encode exists; it needs a Wan base.

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
    print("encode: latents/s not measured yet (p2e curate encode needs a Wan base)")


if __name__ == "__main__":
    main()
