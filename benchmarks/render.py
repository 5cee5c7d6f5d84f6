"""Benchmark `p2e render`: seconds per frame on shape-faithful tiny Wan pipelines, with 0, 1 and 3 LoRAs.

Two worlds, both the real diffusers classes with random weights:
  micro  the test world: 2 blocks x 24 dim, VAE z_dim 4; 32x32, 5 frames, 2 steps
  proxy  the size of the embedded tiny world (DESIGN section 2): 4 blocks x 128 dim, ffn 512,
         VAE z_dim 16; 64x64, 9 frames, 10 steps
LoRAs are rank 8 on every default target (q/k/v/o of both attentions, FFN in/out), loaded as peft
adapters once; the timed part is Renderer.render (text encoding, denoising, VAE decode), the
median of --repeats runs after one warm-up. Wall time; the figures depend on the CPU and on
torch's thread count (--threads; on a busy 2-core box 1 thread is several times faster).

Run: python benchmarks/render.py [--repeats 3] [--threads 1] [--worlds micro,proxy]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

WORLDS = {
    "micro": {"build": {}, "frames": 5, "size": (32, 32), "steps": 2},
    "proxy": {"build": {"blocks": 4, "heads": 4, "head_dim": 32, "ffn_dim": 512, "z_dim": 16, "vae_base_dim": 16,
                        "text_dim": 384},
              "frames": 9, "size": (64, 64), "steps": 10},
}
LORA_COUNTS = (0, 1, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--worlds", default="micro,proxy")
    args = parser.parse_args()

    import numpy as np
    import torch

    from p2e_cli import console
    from p2e_cli.lora_io import LoraLayer, write_lora
    from p2e_cli.render import Renderer, RenderParams, resolve_lora
    from p2e_cli.wan import build_test_pipeline, layer_table

    if args.threads:
        torch.set_num_threads(args.threads)
    console.configure(quiet=True)
    rng = np.random.default_rng(0)
    image = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in args.worlds.split(","):
            spec = WORLDS[world]
            base = build_test_pipeline(Path(tmp) / world, "wan22", **spec["build"])
            table = layer_table(base / "transformer")
            loras = []
            for i in range(max(LORA_COUNTS)):
                g = torch.Generator().manual_seed(i)
                layers = {l.name: (torch.randn(8, l.in_features, generator=g) * 0.02,
                                   torch.randn(l.out_features, 8, generator=g) * 0.02) for l in table}
                path = write_lora(Path(tmp) / f"{world}_{i}.safetensors",
                                  {n: LoraLayer(a, b, 8.0) for n, (a, b) in layers.items()})
                loras.append(resolve_lora(str(path)))
            renderer = Renderer(base)
            params = RenderParams(prompt="melting into liquid", frames=spec["frames"], steps=spec["steps"],
                                  size=spec["size"])
            for count in LORA_COUNTS:
                renderer.render(image, loras[:count], params)  # warm-up; loads the adapters once
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    renderer.render(image, loras[:count], params)
                    times.append(time.perf_counter() - start)
                seconds = statistics.median(times)
                rows.append((world, len(table), spec, count, seconds))

    print(f"torch threads: {torch.get_num_threads()}, median of {args.repeats} after a warm-up")
    print(f"{'world':6} {'layers':>6} {'clip':>14} {'steps':>5} {'LoRAs':>5} {'s/clip':>8} {'s/frame':>8}")
    for world, n_layers, spec, count, seconds in rows:
        clip = f"{spec['frames']}x{spec['size'][0]}x{spec['size'][1]}"
        print(f"{world:6} {n_layers:6d} {clip:>14} {spec['steps']:5d} {count:5d} {seconds:8.3f} "
              f"{seconds / spec['frames']:8.4f}")


if __name__ == "__main__":
    main()
