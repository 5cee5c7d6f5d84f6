"""Benchmark `p2e generate` latency (issue targets on 2 CPU cores: cold CLI < 3 s, warm
in-process < 20 ms per LoRA, 100 prompts batched < 1 s).

Prints:
  cold      wall time of the real CLI, `p2e generate PROMPT -o FILE --no-register`, in a fresh
            process (imports, text encoder and hypernetwork load, cached W0 encoding, writing the
            file), best of --repeats; the first run also builds the W0 encoding cache, shown apart
  warm      in-process Generator: one prompt per call (text encoding + fusion + decode)
  batched   in-process Generator: 100 prompts in one call
  encode    the one-off W0 weight encoding that the cache saves (per base and hypernetwork)

Run: python benchmarks/generate.py [--base tiny] [--hypernet ID|FILE | --random] [--repeats 3]
(--random: a randomly initialised hypernetwork of the default recipe's shape for the base; speed
does not depend on the weights, so latency can be measured before one is trained.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["melting into liquid", "spinning clockwise", "fading to black", "zooming in slowly", "turning blue",
           "inflating like a balloon", "dissolving into pixels", "shaking side to side", "blurring out", "going dark"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="registered base (default: tiny)")
    parser.add_argument("--hypernet", default=None, help="registry id/name or file (default: newest for the base)")
    parser.add_argument("--random", action="store_true", help="time a random-weight network of recipes/base.yaml's shape")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", default=None, help="P2E_HOME to use (default: the current one)")
    args = parser.parse_args()

    import torch

    from p2e_cli import console
    from p2e_cli.hypernet.store import resolve_hypernet
    from p2e_cli.hypernet.store import Generator
    from p2e_cli.registry import open_registry, set_home
    from p2e_cli.wan import resolve_base

    if args.home:
        set_home(args.home)
    console.configure(quiet=True)
    reg = open_registry()
    base = resolve_base(args.base)
    with tempfile.TemporaryDirectory() as tmp:
        if args.random:
            path = random_hypernet(base, Path(tmp) / "random-hypernet.safetensors")
            args.hypernet = str(path)
        else:
            path, _ = resolve_hypernet(reg, args.hypernet, base)
        print(f"base {base.name}, hypernetwork {path.name}, {torch.get_num_threads()} torch threads")
        cache = Path(tmp) / "cache"
        start = time.perf_counter()
        Generator(path, base, cache)
        encode_s = time.perf_counter() - start
        gen = Generator(path, base, cache)  # from the cache now
        gen(PROMPTS[:1])  # text encoder load + first-call warm-up
        warm = []
        for i in range(20):
            start = time.perf_counter()
            gen([PROMPTS[i % len(PROMPTS)]])
            warm.append(time.perf_counter() - start)
        hundred = [f"{p} {i}" for i, p in enumerate(PROMPTS * 10)]
        batched = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            gen(hundred)
            batched.append(time.perf_counter() - start)

        env = {**os.environ, **({"P2E_HOME": args.home} if args.home else {})}
        command = [sys.executable, "-m", "p2e_cli", "generate", PROMPTS[0], "--no-register"]
        command += ["--base", base.name or base.id] + (["--hypernet", args.hypernet] if args.hypernet else [])
        cold = []
        for i in range(args.repeats + 1):
            out = Path(tmp) / f"cold{i}.safetensors"
            start = time.perf_counter()
            subprocess.run(command + ["-o", str(out)], env=env, check=True, capture_output=True)
            cold.append(time.perf_counter() - start)

    print(f"encode   {encode_s * 1e3:8.0f} ms   one-off W0 encoding (cached afterwards)")
    print(f"cold     {min(cold[1:]):8.2f} s    CLI in a fresh process, best of {args.repeats} "
          f"(first run, building the registry cache: {cold[0]:.2f} s)   target < 3 s")
    print(f"warm     {sorted(warm)[len(warm) // 2] * 1e3:8.1f} ms   median of 20 single-prompt calls   target < 20 ms")
    print(f"batched  {min(batched):8.3f} s    100 prompts in one call, best of {args.repeats}   target < 1 s")


def random_hypernet(base, path: Path) -> Path:
    """recipes/base.yaml's network for `base`, randomly initialised, saved like a trained one."""
    import torch

    from p2e_cli.hypernet.model import MODULE_TYPES, Hypernetwork, layer_specs
    from p2e_cli.hypernet.store import save_hypernet
    from p2e_cli.hypernet.train import network_config
    from p2e_cli.recipes import load_recipe
    from p2e_cli.wan import base_config, layer_table

    layers = layer_specs(layer_table(base_config(base), MODULE_TYPES))
    net = Hypernetwork(network_config(load_recipe("base", []).model, layers, rank=8, text_dim=384), layers)
    return save_hypernet(path, net, text_encoder="minilm", layer_table=base.data["layer_table"], target="canonical",
                         library=[("melt", "melting into liquid")], library_embeddings=torch.randn(1, 384),
                         dtype=torch.float16)


if __name__ == "__main__":
    main()
