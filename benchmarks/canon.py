"""Benchmark `p2e canon` on a Wan2.1-I2V-14B-shaped random LoRA (no W0 is ever allocated).

The layer table comes from the 14B transformer config alone (40 blocks, dim 5120, ffn 13824, image
projections add_k/add_v: 480 adapted linears, 12 per block). Prints three figures:
  math     canonical_lora on the in-memory LoRA (float64 QR + r×r SVD per layer, float32 out)
  cli      `p2e canon FILE -o OUT` end to end in-process: read, canonicalize, check, write
  again    the same on the canonical output (the idempotent shortcut: nothing to recompute)
plus the largest relative ΔW error (float32 storage) over block 0's layers, by `relative_error`.
On a busy 2-core box, --threads 1 avoids OpenMP threads fighting other jobs for the cores.

Run: python benchmarks/canon.py [--rank 32] [--blocks 40] [--no-cli] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

WAN21_I2V_14B = {"num_layers": 40, "num_attention_heads": 40, "attention_head_dim": 128, "ffn_dim": 13824,
                 "added_kv_proj_dim": 5120}


def random_lora(table, rank: int, seed: int = 0):
    import torch

    from p2e_cli.lora_io import LoraFile, LoraLayer

    g = torch.Generator().manual_seed(seed)
    return LoraFile({layer.name: LoraLayer(torch.randn(rank, layer.in_features, generator=g) * 0.01,
                                           torch.randn(layer.out_features, rank, generator=g) * 0.01, rank / 2)
                     for layer in table})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-cli", action="store_true", help="skip the file round trip (writes ~1.4 GB to a temp dir)")
    args = parser.parse_args()

    import torch

    from p2e_cli.canon import canonical_lora, relative_error
    from p2e_cli.cli import main as p2e
    from p2e_cli.lora_io import write_lora
    from p2e_cli.wan import MODULE_TYPES, layer_table

    if args.threads:
        torch.set_num_threads(args.threads)
    table = layer_table({**WAN21_I2V_14B, "num_layers": args.blocks}, MODULE_TYPES)
    lora = random_lora(table, args.rank)
    params = sum(l.A.numel() + l.B.numel() for l in lora.layers.values())
    print(f"{len(table)} layers, rank {args.rank}, {params / 1e6:.0f} M LoRA parameters, "
          f"{torch.get_num_threads()} torch threads")

    start = time.perf_counter()
    canonical = canonical_lora(lora)
    seconds = time.perf_counter() - start
    error = max(relative_error(l.B, l.A, l.scale, canonical.layers[name].B, canonical.layers[name].A, 1.0)
                for name, l in lora.layers.items() if name.startswith("blocks.0."))
    print(f"math   {seconds:6.2f} s   max relative ΔW error {error:.1e} (block 0)")
    del canonical
    if args.no_cli:
        return
    with tempfile.TemporaryDirectory(prefix="p2e-bench-canon-") as tmp:
        source, out, again = Path(tmp) / "lora.safetensors", Path(tmp) / "canon.safetensors", Path(tmp) / "again.safetensors"
        write_lora(source, lora)
        del lora
        os.environ["P2E_HOME"] = str(Path(tmp) / "home")
        for label, src, dst in (("cli", source, out), ("again", out, again)):
            start = time.perf_counter()
            code = p2e(["--quiet", "canon", str(src), "-o", str(dst)])
            print(f"{label:6} {time.perf_counter() - start:6.2f} s   (exit {code}, {dst.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
