"""How predictable a base's canonical reference library is from itself: whether similar effects
have similar updates (the precondition for a hypernetwork to generalize to held-out effects).

    P2E_HOME=... python benchmarks/library_coherence.py [--base tiny]

Prints: the mean |cosine| between effects' ΔW (all adapted layers flattened), the ΔW NMSE of the
mean train ΔW on train and held-out effects (the best prompt-blind prediction), each held-out
effect's NMSE from its nearest train effect, and the cosine of a few related / unrelated pairs.
Then oracles for held-out effects (NMSE over all layers at once, each using the held-out ΔW it
is scored on, so bounds, not predictors): the best train ΔW at its best scale, and the best
linear combination of all train ΔWs; and for compositions in the library, whether the composite's
ΔW is closer to the sum or to the mean of its parts' ΔWs.
"""

from __future__ import annotations

import argparse
import statistics as st

import torch

COMPOSITIONS = [("spin-ccw-blue", "spin-ccw", "hue-blue"), ("zoom-in-fade-white", "zoom-in", "fade-white"),
                ("ripple-invert", "ripple", "invert"), ("spin-fade-black", "spin-cw", "fade-black"),
                ("melt-red", "melt", "hue-red"), ("zoom-in-desaturate", "zoom-in", "desaturate"),
                ("pixelate-invert", "pixelate", "invert"), ("swirl-fade-white", "swirl-cw", "fade-white"),
                ("shake-glitch", "shake", "glitch"), ("inflate-rainbow", "inflate", "rainbow"),
                ("blur-zoom-out", "blur-out", "zoom-out")]
PAIRS = [("zoom-in", "zoom-in-medium"), ("hue-red", "hue-orange"), ("spin-ccw", "spin-ccw-fast"),
         ("fade-black", "spin-fade-black"), ("zoom-out", "blur-zoom-out"), ("hue-red", "zoom-in")]


def main() -> None:
    from p2e_cli.hypernet.library import canonical_library
    from p2e_cli.registry import open_registry
    from p2e_cli.catalog import resolve_base

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
    index = {e.effect: i for i, e in enumerate(examples)}
    oracles(flat.double(), index, [e.effect for e in train], [e.effect for e in heldout])
    flat = flat / flat.norm(dim=1, keepdim=True)
    cos, n = flat @ flat.T, len(examples)
    print(f"mean |cos| between effects {float((cos.abs().sum() - n) / (n * (n - 1))):.3f}")
    for a, b in PAIRS:
        if a in index and b in index:
            print(f"cos {a} / {b}: {float(cos[index[a], index[b]]):.3f}")
    if heldout:
        nearest = [min(nmse(dw[t.effect], dw[h.effect]) for t in train) for h in heldout]
        print(f"held-out from its nearest train effect: NMSE median {st.median(nearest):.3f}, best {min(nearest):.3f}")


def oracles(flat: torch.Tensor, index: dict[str, int], train: list[str], heldout: list[str]) -> None:
    """The held-out oracles and the composition check (see the module docstring)."""
    gram = flat @ flat.T
    t = [index[e] for e in train]
    g_tt = gram[t][:, t]
    ridge = g_tt + 1e-6 * g_tt.trace() / len(t) * torch.eye(len(t), dtype=gram.dtype)
    scaled, span, blind = [], [], []
    mean = flat[t].mean(0)
    for e in heldout:
        h = index[e]
        blind.append(float((mean - flat[h]).pow(2).sum() / flat[h].pow(2).sum()))
        g, rr = gram[t, h], float(gram[h, h])
        scaled.append(min(1 - float(g[j]) ** 2 / (float(g_tt[j, j]) * rr) for j in range(len(t))))
        w = torch.linalg.solve(ridge, g)
        span.append(float(w @ g_tt @ w - 2 * w @ g + rr) / rr)
    if heldout:
        print(f"held-out, NMSE over all layers: the mean train ΔW median {st.median(blind):.3f}; oracles: best train "
              f"ΔW at its best scale median {st.median(scaled):.3f}, best combination of all {len(t)} train ΔWs "
              f"median {st.median(span):.3f}")

    def nmse(parts: list[str], weights: list[float], target: str) -> float:
        p = sum(w * flat[index[e]] for e, w in zip(parts, weights))
        return float((p - flat[index[target]]).pow(2).sum() / flat[index[target]].pow(2).sum())

    for composite, a, b in COMPOSITIONS:
        if {composite, a, b} <= set(index):
            print(f"composition {composite}: NMSE of the sum of its parts' ΔW {nmse([a, b], [1, 1], composite):.3f}, "
                  f"of their mean {nmse([a, b], [0.5, 0.5], composite):.3f}")


if __name__ == "__main__":
    main()
