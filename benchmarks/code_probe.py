"""Does a coded world's base lay out a motion when its prompt names the motion's code? (issue 29)

    python benchmarks/code_probe.py --base tiny25 [--sheet codes.png]

A world built with `transformer.captions: coded` learned each changed clip's code words (p2e_cli/world/change.py
`motion_codes`: graded words for the sign and size of its mean turn and zoom, a word per pan direction, ...). Here
the base renders, with no LoRA and its default render settings, on the held-out identification photos, the code of
each large pure motion as its prompt -- a turn either way, zoom in and out, a far pan in four directions -- and the
generic caption "the scene changes". Each render is ranked among every library effect's ground truth and the still
photo as `p2e eval run` ranks a LoRA's render (1 = identified). A base that lays out a told motion identifies each
code as its motion's effect; one that learnt only "something changes" renders every code as the same blur.

Which sign of a code is which effect follows from `change.warp` (the output pixel p shows the source at A(t) p -
pan(t), x right and y down): a positive turn angle rotates the content counter-clockwise on screen, a positive zoom
magnifies, a positive pan moves the content right / down. The probe prints the ranks of both members of each pair,
so a flipped sign shows as the other member at rank 1.
"""

from __future__ import annotations

import argparse
import time

import torch

from p2e_cli.world.change import motion_codes

# a pure motion, summarised as change.warp summarises a clip (mean over its frames) -> the effect that performs
# it and its opposite
MOTIONS = {
    "turn +large": (dict(turns=0.5), "spin-ccw", "spin-cw"),
    "turn -large": (dict(turns=-0.5), "spin-cw", "spin-ccw"),
    "zoom +large": (dict(zoom=0.7), "zoom-in", "zoom-out"),
    "zoom -large": (dict(zoom=-0.7), "zoom-out", "zoom-in"),
    "pan +x far": (dict(pan=(0.5, 0.0)), "slide-right", "slide-left"),
    "pan -x far": (dict(pan=(-0.5, 0.0)), "slide-left", "slide-right"),
    "pan +y far": (dict(pan=(0.0, 0.5)), "slide-down", "slide-up"),
    "pan -y far": (dict(pan=(0.0, -0.5)), "slide-up", "slide-down"),
}


def code_of(motion: dict) -> str:
    """The caption a coded build gives a clip whose only change is `motion` (change.motion_codes itself)."""
    summary = {key: torch.tensor([float(motion.get(key, 0.0))]) for key in ("turns", "zoom", "squash", "shear", "twist")}
    summary.update(pan=torch.tensor([motion.get("pan", (0.0, 0.0))]), centre=torch.zeros(1, 2),
                   piecewise=torch.tensor([False]), smooth=torch.tensor([False]))
    use = {key: torch.tensor([False]) for key in ("colour", "mask", "shape")}
    return motion_codes(summary, use, torch.tensor([True]))[0]


GENERIC = "the scene changes"


def main() -> None:
    from p2e_cli import identify
    from p2e_cli.catalog import resolve_base
    from p2e_cli.render import Renderer, RenderParams
    from p2e_cli.wan import base_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a registered base built with transformer.captions: coded")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sheet", help="write a contact sheet: per code, its effect's truth and the render (first identification photo)")
    args = parser.parse_args()

    base = resolve_base(args.base)
    size = base_settings(base)["size"][1]
    renderer = Renderer(base)
    hits, shown = 0, []
    told = [(name, code_of(motion), effect, opposite) for name, (motion, effect, opposite) in MOTIONS.items()]
    for motion, prompt, effect, opposite in [*told, ("generic", GENERIC, "still", "still")]:
        start = time.perf_counter()
        renders = identify.render_on_photos(
            lambda image: renderer.render(image, [], RenderParams(prompt=prompt, seed=args.seed)), size)
        own, other = identify.identify(effect, renders), identify.identify(opposite, renders)
        hits += sum(rank == 1 for rank in own["ranks"]) if prompt != GENERIC else 0
        print(f"{motion:12s} {prompt!r:20s} {effect} ranks {own['ranks']}  {opposite} ranks {other['ranks']}  "
              f"nearest {own['nearest']}  ({time.perf_counter() - start:.1f} s)", flush=True)
        shown.append((effect, {f"{motion}: {prompt}": renders[identify.PHOTOS[0]]}))
    print(f"codes identified as their motion's effect: {hits} of {len(told) * len(identify.PHOTOS)} renders")
    if args.sheet:
        identify.sheet(shown, identify.PHOTOS[0], args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
