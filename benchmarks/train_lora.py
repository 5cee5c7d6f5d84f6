"""Benchmark reference-LoRA training: one-by-one vs batched (several effects' LoRAs in one pass).

Prints two tables, measured in one run on the same base and data:
  cost      per-sample cost of a LoRA training step against the batch size (one adapter): where
            it stops falling is the hardware's limit, and what batching several LoRAs can buy
  library   LoRAs per hour training G effects one by one (group_size 1) vs all G in one batched
            pass (group_size G), both at the recipe's per-effect batch and step count. Batched
            training follows the same per-effect trajectory as one-by-one (each effect draws its own
            samples and its adapter's gradient does not see the others; tests/unit/
            test_lora_training.py proves it), so the final validation losses are equal: they
            are printed side by side as the check.

Run: python benchmarks/train_lora.py [--base tiny] [--effects 8] [--steps 20] [--batch 8]
(--base: a registered base name, or a diffusers world folder such as one from p2e world build.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="tiny")
    parser.add_argument("--effects", type=int, default=8, help="G: LoRAs trained per comparison")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="samples per effect per step")
    parser.add_argument("--cost-batches", default="1,2,4,8,16,32")
    args = parser.parse_args()

    import torch

    from p2e_cli import console
    from p2e_cli.effects import effect_names
    from p2e_cli.lora_jobs import effect_set, encode_all, gather
    from p2e_cli.lora_training import train_group
    from p2e_cli.recipes import load_recipe
    from p2e_cli import adapters
    from p2e_cli.registry import open_registry, set_home
    from p2e_cli.training import flow_matching_loss, name_seed, shifted_sigmas
    from p2e_cli.catalog import resolve_base
    from p2e_cli.wan import base_settings, describe_base, layer_table, load_pipeline

    console.configure(quiet=True)
    with tempfile.TemporaryDirectory() as home:
        set_home(home)
        reg = open_registry()
        if Path(args.base).is_dir():
            base = reg.add("base", name="bench", data=describe_base(Path(args.base)))
        else:
            base = resolve_base(args.base)
        cfg = load_recipe("lora", [f"steps={args.steps}", f"batch_size={args.batch}", f"validate_every={args.steps}",
                                   f"checkpoint_every={args.steps}", "clips_per_effect=16", "val_clips=2"])
        settings = base_settings(base)
        pipe = load_pipeline(base)
        names = [layer.name for layer in layer_table(pipe.transformer, cfg.targets)]
        effects = effect_names("train")[:: max(1, len(effect_names("train")) // args.effects)][: args.effects]
        data = [gather(reg, e, cfg, settings) for e in effects]
        encode_all(reg, base, pipe, data)
        sets = [effect_set(reg, base, d, None) for d in data]
        shift = float(settings.get("flow_shift") or 3.0)
        threads = torch.get_num_threads()
        print(f"base {base.name}: {len(names)} adapted layers, rank {cfg.rank}, {threads} torch threads, "
              f"latents {tuple(sets[0].latents.shape[1:])}")

        # -- per-sample step cost against batch size (one adapter) ---------------------------
        print("\nbatch  ms/step  ms/sample")
        layers = adapters.inject(pipe.transformer, names, [0], cfg.rank, cfg.alpha)
        optimizer = torch.optim.AdamW(adapters.parameters(layers), lr=1e-4)
        try:
            for batch in map(int, args.cost_batches.split(",")):
                g = torch.Generator().manual_seed(name_seed("bench", batch))
                idx = torch.randint(len(sets[0].latents), (batch,), generator=g)
                x, text = sets[0].latents[idx].float(), sets[0].text[idx].float()
                sigmas, noise = shifted_sigmas(torch.rand(batch, generator=g), shift), torch.randn(x.shape, generator=g)
                times = []
                for _ in range(4):
                    start = time.perf_counter()
                    with adapters.routed(layers, torch.zeros(batch, dtype=torch.long)):
                        loss = flow_matching_loss(pipe.transformer, x, text, sigmas, noise).mean()
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    times.append(time.perf_counter() - start)
                best = min(times[1:])
                print(f"{batch:5d}  {best * 1e3:7.1f}  {best * 1e3 / batch:9.1f}")
        finally:
            adapters.remove(pipe.transformer, layers)

        # -- one by one vs batched ------------------------------------------------------------
        start = time.perf_counter()
        single = [train_group(pipe.transformer, names, [s], cfg, shift=shift) for s in sets]
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        batched = train_group(pipe.transformer, names, sets, cfg, shift=shift)
        together = time.perf_counter() - start
        print(f"\n{len(sets)} LoRAs x {args.steps} steps x batch {args.batch} (validation included in both)")
        print(f"{'path':12s} {'seconds':>8s} {'LoRAs/hour':>11s}")
        print(f"{'one-by-one':12s} {one_by_one:8.1f} {3600 * len(sets) / one_by_one:11.0f}")
        print(f"{'batched':12s} {together:8.1f} {3600 * len(sets) / together:11.0f}")
        print(f"speed-up {one_by_one / together:.2f}x")
        print("\nfinal validation loss  one-by-one  batched")
        for i, (s, r) in enumerate(zip(sets, single)):
            print(f"  {s.name:20s} {r.final_loss(0):10.5f} {batched.final_loss(i):8.5f}")


if __name__ == "__main__":
    main()
