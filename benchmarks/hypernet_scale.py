"""How the hypernetwork scales from the tiny world to real Wan shapes (issue: real Wan scale).

For each layer table (the shipped tiny world, a 1.3B-shaped and a 14B-shaped Wan2.1 I2V), with the
default network (recipes/base.yaml, rank 8) on random W0 streamed one layer at a time:

  params      parameters of the default network and of the paper-size one (recipes/wan21-i2v-14b.yaml,
              rank 32; counted on the meta device)
  tokens      W0 row + column tokens (all read at full rank)
  encode      the one-off W0 encoding pass (tokenize, compress, features), W0 generation excluded
  cache       bytes of the cached encoding (float32)
  generate    warm decode of one prompt from the cached encoding (fusion + mixing + factor rows)
  peak RSS    peak resident memory of the process that streamed the whole table

Each table runs in its own process, so peak RSS is that table's. A table given --blocks N runs its
first N blocks and scales encode/cache/generate linearly to all blocks, labelled "extrapolated"
(every block of a Wan has the same shapes, so the cost per block is the same); peak RSS is then
the measured one of N blocks. Run: python benchmarks/hypernet_scale.py [--blocks-14b N | --full]
[--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPES = ["tiny", "wan21-i2v-1.3b", "wan21-i2v-14b"]


def table_of(shape: str):
    from p2e_cli.wan import layer_table
    from p2e_cli.wan_shapes import real_layer_table
    from p2e_cli.world.shipped import shipped_world

    if shape == "tiny":
        return layer_table(shipped_world("tiny") / "transformer")
    return real_layer_table(shape)


def measure(shape: str, blocks: int | None) -> dict:
    """One table, in this process (the parent runs each in a fresh one)."""
    import torch

    from p2e_cli.hypernet.model import Hypernetwork, layer_specs
    from p2e_cli.hypernet.train import network_config
    from p2e_cli.recipes import load_recipe
    from p2e_cli.wan_shapes import random_w0

    torch.manual_seed(0)
    full = layer_specs(table_of(shape))
    n_blocks = max(s.block for s in full) + 1
    layers = [s for s in full if blocks is None or s.block < blocks]
    factor = n_blocks / (max(s.block for s in layers) + 1)
    # base.yaml's feature_dim 512 is the tiny world's widest side; at real widths the cached
    # features stay 128 wide (the rows in docs/results.md), else the cache grows 4x
    small = network_config(load_recipe("base", ["model.feature_dim=128"]).model, layers, rank=8, text_dim=384)
    with torch.device("meta"):
        paper = Hypernetwork(network_config(load_recipe("wan21-i2v-14b", []).model, full, rank=32, text_dim=384), full)
    net = Hypernetwork(small, layers).eval()
    parts, encode_s = [], 0.0
    with torch.no_grad():
        for i, w in enumerate(random_w0(layers)):
            start = time.perf_counter()
            parts.append(net.encode_layer(i, w))
            encode_s += time.perf_counter() - start
            del w
        start = time.perf_counter()
        encoded = net.encode_parts(parts)
        encode_s += time.perf_counter() - start
        del parts
        text, mask = torch.randn(1, 8, 384), torch.ones(1, 8, dtype=torch.bool)
        net(encoded, text, mask)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            net(encoded, text, mask)
            times.append(time.perf_counter() - start)
    cache = sum(v.numel() * v.element_size() for part in encoded for v in part.values())
    return {"shape": shape, "blocks": n_blocks, "measured_blocks": max(s.block for s in layers) + 1,
            "extrapolated": factor != 1, "layers": len(full), "tokens": sum(s.out_features + s.in_features for s in full),
            "w0_params": sum(s.out_features * s.in_features for s in full),
            "params": sum(p.numel() for p in net.parameters()), "params_paper": sum(p.numel() for p in paper.parameters()),
            "encode_s": encode_s * factor, "cache_bytes": cache * factor, "generate_ms": sorted(times)[2] * 1e3 * factor,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks-14b", type=int, default=4, help="blocks of the 14B table to run (scaled to 40)")
    parser.add_argument("--full", action="store_true", help="run every block of every table (14B: minutes, ~5 GB)")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--blocks", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.blocks)))
        return

    import torch

    print(f"{torch.get_num_threads()} torch threads; default network = recipes/base.yaml (rank 8, "
          "feature_dim 128), paper-size = recipes/wan21-i2v-14b.yaml (rank 32)")
    rows = []
    for shape in args.shapes.split(","):
        blocks = None if args.full or shape != "wan21-i2v-14b" else args.blocks_14b
        command = [sys.executable, __file__, "--one", shape] + ([] if blocks is None else ["--blocks", str(blocks)])
        rows.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]))
    print(f"{'table':16} {'layers':>6} {'W0 params':>10} {'tokens':>9} {'net params':>10} {'paper net':>9} "
          f"{'encode':>9} {'cache':>9} {'generate':>9} {'peak RSS':>9}")
    for r in rows:
        label = f" (extrapolated from {r['measured_blocks']} of {r['blocks']} blocks; peak RSS of those)" if r["extrapolated"] else ""
        print(f"{r['shape']:16} {r['layers']:>6} {r['w0_params'] / 1e9:>9.2f}B {r['tokens'] / 1e6:>8.2f}M "
              f"{r['params'] / 1e6:>9.2f}M {r['params_paper'] / 1e9:>8.2f}B {r['encode_s']:>8.2f}s "
              f"{r['cache_bytes'] / 2**30:>6.2f}GiB {r['generate_ms']:>7.1f}ms {r['peak_rss_gib']:>6.2f}GiB{label}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
