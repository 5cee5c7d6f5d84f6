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

from p2e_cli.world.change import _FAR, _PAN, _TURN, _ZOOM

# code prompt -> (motion, the library effect that performs it, its opposite)
CODES = {
    _TURN[5]: ("turn +large", "spin-ccw", "spin-cw"),
    _TURN[0]: ("turn -large", "spin-cw", "spin-ccw"),
    _ZOOM[5]: ("zoom +large", "zoom-in", "zoom-out"),
    _ZOOM[0]: ("zoom -large", "zoom-out", "zoom-in"),
    f"{_PAN[0]} {_FAR}": ("pan +x far", "slide-right", "slide-left"),
    f"{_PAN[4]} {_FAR}": ("pan -x far", "slide-left", "slide-right"),
    f"{_PAN[2]} {_FAR}": ("pan +y far", "slide-down", "slide-up"),
    f"{_PAN[6]} {_FAR}": ("pan -y far", "slide-up", "slide-down"),
}
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
    for prompt, (motion, effect, opposite) in [*CODES.items(), (GENERIC, ("generic", "still", "still"))]:
        start = time.perf_counter()
        renders = identify.render_on_photos(
            lambda image: renderer.render(image, [], RenderParams(prompt=prompt, seed=args.seed)), size)
        own, other = identify.identify(effect, renders), identify.identify(opposite, renders)
        hits += own["top1"] * (prompt != GENERIC) * len(renders)
        print(f"{motion:12s} {prompt!r:20s} {effect} ranks {own['ranks']}  {opposite} ranks {other['ranks']}  "
              f"nearest {own['nearest']}  ({time.perf_counter() - start:.1f} s)", flush=True)
        shown.append((effect, {f"{motion}: {prompt}": renders[identify.PHOTOS[0]]}))
    print(f"codes identified as their motion's effect: {hits:.0f} of {len(CODES) * len(identify.PHOTOS)} renders")
    if args.sheet:
        identify.sheet(shown, identify.PHOTOS[0], args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
