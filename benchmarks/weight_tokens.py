"""What do the W0 weight tokens cost? Parameters and speed of the default network (recipes/base.yaml) on the
shipped tiny world's layer table, with `model.conditioning` weights (the paper's), noise and none, side by side.

    python benchmarks/weight_tokens.py

Prints, per variant: parameters (all, and those the forward pass uses), the one-off W0 encoding (per base,
cached by `p2e generate`) and a warm single-prompt forward from that encoding, median of 20. Random weights:
speed and size do not depend on training. What the tokens buy in quality is the ablation table's business
(`p2e eval ablations`, docs/results.md).
"""

from __future__ import annotations

import statistics
import time


def main() -> None:
    import torch

    import dataclasses

    from p2e_cli.canon import base_weights
    from p2e_cli.hypernet.model import MODULE_TYPES, Hypernetwork, layer_specs
    from p2e_cli.hypernet.train import network_config
    from p2e_cli.recipes import load_recipe
    from p2e_cli.wan import layer_table
    from p2e_cli.world.shipped import shipped_world

    path = shipped_world("tiny")
    layers = layer_specs(layer_table(path / "transformer", MODULE_TYPES))
    weights = [w for _, w in base_weights(path / "transformer", [f"{s.name}.weight" for s in layers])]
    model = load_recipe("base", []).model
    text, mask = torch.randn(1, 12, 384), torch.ones(1, 12, dtype=torch.bool)
    print(f"tiny layer table: {len(layers)} layers; {torch.get_num_threads()} torch threads")
    print("conditioning  parameters  used in forward  W0 encoding  warm forward")
    for conditioning in ("weights", "noise", "none"):
        torch.manual_seed(0)
        net = Hypernetwork(network_config(dataclasses.replace(model, conditioning=conditioning), layers, rank=8,
                                          text_dim=384), layers).eval()
        with torch.no_grad():
            start = time.perf_counter()
            encoded = net.encode_weights(weights)
            encode_s = time.perf_counter() - start
            net(encoded, text, mask)  # warm-up
            runs = []
            for _ in range(20):
                start = time.perf_counter()
                net(encoded, text, mask)
                runs.append(time.perf_counter() - start)
        total = sum(p.numel() for p in net.parameters())
        used = _used_parameters(net, encoded, weights, text, mask)
        print(f"{conditioning:12s}  {total / 1e6:8.3f} M  {used / 1e6:13.3f} M  {encode_s * 1e3:8.0f} ms  "
              f"{statistics.median(runs) * 1e3:9.1f} ms")


def _used_parameters(net, encoded, weights, text, mask) -> int:
    """Parameters that receive a gradient from the encoding plus one forward pass."""
    net.zero_grad(set_to_none=True)
    out = net(net.encode_weights(weights), text, mask)
    sum(b.float().pow(2).sum() + a.float().pow(2).sum() for b, a in out).backward()
    return sum(p.numel() for p in net.parameters() if p.grad is not None)


if __name__ == "__main__":
    main()
