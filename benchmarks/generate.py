"""Benchmark `p2e generate` latency (issue targets on 2 CPU cores: cold CLI < 3 s, warm
in-process < 20 ms per LoRA, 100 prompts batched < 1 s).

Prints:
  cold      wall time of the real CLI, `p2e generate PROMPT -o FILE --no-register`, in a fresh
            process (imports, text encoder and hypernetwork load, cached W0 encoding, writing the
            file), best of --repeats; the first run also builds the W0 encoding cache, shown apart
  warm      in-process Generator: one prompt per call (text encoding + fusion + decode)
  command   in-process `generation.generate_loras`, what `p2e generate -o FILE --no-register` runs after
            loading: the Generator, the SVD finish of every layer and the file write, one prompt per call
  batched   in-process Generator: 100 prompts in one call
            (both in fp32 and in `auto` precision side by side, with how far auto's ΔW is from fp32's)
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
    from p2e_cli.metrics import delta_agreement
    from p2e_cli.catalog import resolve_base, resolve_hypernet
    from p2e_cli.generation import generate_loras
    from p2e_cli.hypernet.store import Generator, native_bf16
    from p2e_cli.registry import open_registry, set_home

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
        print(f"base {base.name}, hypernetwork {path.name}, {torch.get_num_threads()} torch threads, "
              f"CPU {torch.backends.cpu.get_cpu_capability()}, bf16 in hardware: {native_bf16()}")
        cache = Path(tmp) / "cache"
        start = time.perf_counter()
        Generator(path, base, cache)
        encode_s = time.perf_counter() - start
        hundred = [f"{p} {i}" for i, p in enumerate(PROMPTS * 10)]
        timings, outputs = {}, {}
        for precision in ("fp32", "auto"):  # side by side; auto is what p2e generate uses
            gen = Generator(path, base, cache, precision=precision)  # from the cache now
            gen(PROMPTS[:1])  # text encoder load + first-call warm-up
            warm = []
            for i in range(20):
                start = time.perf_counter()
                gen([PROMPTS[i % len(PROMPTS)]])
                warm.append(time.perf_counter() - start)
            batched = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                outputs[precision] = gen(hundred)
                batched.append(time.perf_counter() - start)
            command_s = []
            for i in range(20):
                start = time.perf_counter()
                generate_loras(reg, gen, None, [PROMPTS[i % len(PROMPTS)]], targets=[Path(tmp) / "warm.safetensors"],
                               register=False)
                command_s.append(time.perf_counter() - start)
            timings[precision] = (sorted(warm)[len(warm) // 2], min(batched), sorted(command_s)[len(command_s) // 2])
        auto = gen.precision  # what auto chose on this machine

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
    for precision, (warm, batched, command_s) in timings.items():
        label = f"{precision} ({auto})" if precision == "auto" else precision
        print(f"warm     {warm * 1e3:8.1f} ms   median of 20 single-prompt calls, {label:<12} target < 20 ms")
        print(f"command  {command_s * 1e3:8.1f} ms   median of 20 generate_loras calls (+ SVD finish, file write), {label}")
        print(f"batched  {batched:8.3f} s    100 prompts in one call, best of {args.repeats}, {label:<8} target < 1 s")
    if auto != "float32":
        # ‖ΔW_auto − ΔW_fp32‖ / ‖ΔW_fp32‖ over all layers
        diffs = sorted(delta_agreement(b, a)["nmse"] ** 0.5 for a, b in zip(outputs["fp32"], outputs["auto"]))
        print(f"{auto} vs fp32: ΔW differs by {diffs[len(diffs) // 2]:.2%} (median over 100 prompts; max {diffs[-1]:.2%})")
    print(f"(p2e generate computes in {auto} here: --precision auto; cold above is that)")


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
