"""Why effect identification low-passes with sigma 1 px: top-1 rates of degraded ground truths, per sigma.

    python benchmarks/identification_distance.py [--photos 3]

For each held-out photo and a few effects, the exact ground truth is degraded (grain, darkening, blur,
a dissolve into mush) and ranked against all library effects plus the still photo with
metrics.identification_distances at several sigmas. Prints the share ranked first.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from p2e_cli import effects as fx
    from p2e_cli.identify import candidate_names, candidates
    from p2e_cli.metrics import identification_distances, low_pass
    from p2e_cli.photos import photo_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--sigmas", default="0,1,2")
    args = parser.parse_args()
    names, rng = candidate_names(), np.random.default_rng(0)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    hits: dict[tuple[str, float], list[bool]] = {}
    for photo in photo_names("heldout")[:args.photos]:
        truths = candidates(photo, 64, 17)
        for target in ("spin-cw", "zoom-in", "melt", "swirl-cw", "shatter", "spin-cw-slow"):
            clip = truths[names.index(target)].astype(np.float64)
            t = np.linspace(0, 1, len(clip)).reshape(-1, 1, 1, 1)
            mush = clip[0].mean((0, 1)) * 0.7
            variants = {f"grain {s}": clip + rng.normal(0, s, clip.shape) for s in (20, 40, 60)}
            variants.update({"darkened to 40%": clip * 0.4, "blurred, sigma 6 px": low_pass(clip, 6.0),
                             "dissolved 80% into mush": (1 - 0.8 * t) * clip + 0.8 * t * mush + rng.normal(0, 15, clip.shape)})
            for label, v in variants.items():
                v = np.clip(v, 0, 255)
                v[0] = clip[0]
                for sigma in sigmas:
                    d = identification_distances(v, truths, sigma)
                    hits.setdefault((label, sigma), []).append(bool(np.sum(d <= d[names.index(target)]) == 1))
    print(f"{len(fx.EFFECTS) + 1} candidates; top-1 share per sigma {sigmas}")
    for label in dict.fromkeys(k for k, _ in hits):
        print(f"  {label:26s} " + "  ".join(f"{np.mean(hits[(label, s)]):.2f}" for s in sigmas))


if __name__ == "__main__":
    main()
