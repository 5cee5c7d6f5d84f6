"""How predictable a base's canonical reference library is from itself: whether similar effects
have similar updates (the precondition for a hypernetwork to generalize to held-out effects).

    P2E_HOME=... python benchmarks/library_coherence.py [--base tiny]

Prints: the mean |cosine| between effects' ΔW (all adapted layers flattened), the ΔW NMSE of the
mean train ΔW on train and held-out effects (the best prompt-blind prediction), each held-out
effect's NMSE from its nearest train effect, and the cosine of a few related / unrelated pairs.
"""

from __future__ import annotations

import argparse
import statistics as st

import torch

PAIRS = [("zoom-in", "zoom-in-medium"), ("hue-red", "hue-orange"), ("spin-ccw", "spin-ccw-fast"),
         ("fade-black", "spin-fade-black"), ("zoom-out", "blur-zoom-out"), ("hue-red", "zoom-in")]


def main() -> None:
    from p2e_cli.hypernet.library import canonical_library
    from p2e_cli.registry import open_registry
    from p2e_cli.wan import resolve_base

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="tiny")
    args = parser.parse_args()
    names, examples = canonical_library(open_registry(), resolve_base(args.base))
    train = [e for e in examples if e.split == "train"]
    heldout = [e for e in examples if e.split != "train"]
    dw = {e.effect: [b @ a for b, a in e.factors] for e in examples}

    def nmse(pred, target):
        return sum(float((p - t).pow(2).sum() / t.pow(2).sum()) for p, t in zip(pred, target)) / len(target)

    mean = [torch.stack([dw[e.effect][i] for e in train]).mean(0) for i in range(len(names))]
    print(f"{len(train)} train, {len(heldout)} held-out effects, {len(names)} layers")
    print(f"NMSE of the mean train ΔW: train {st.mean(nmse(mean, dw[e.effect]) for e in train):.3f}, "
          f"held-out {st.mean(nmse(mean, dw[e.effect]) for e in heldout) if heldout else float('nan'):.3f}")
    flat = torch.stack([torch.cat([d.flatten() for d in dw[e.effect]]) for e in examples])
    flat = flat / flat.norm(dim=1, keepdim=True)
    cos, n = flat @ flat.T, len(examples)
    print(f"mean |cos| between effects {float((cos.abs().sum() - n) / (n * (n - 1))):.3f}")
    index = {e.effect: i for i, e in enumerate(examples)}
    for a, b in PAIRS:
        if a in index and b in index:
            print(f"cos {a} / {b}: {float(cos[index[a], index[b]]):.3f}")
    if heldout:
        nearest = [min(nmse(dw[t.effect], dw[h.effect]) for t in train) for h in heldout]
        print(f"held-out from its nearest train effect: NMSE median {st.median(nearest):.3f}, best {min(nearest):.3f}")


if __name__ == "__main__":
    main()
