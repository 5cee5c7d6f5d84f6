"""Which reference-LoRA recipe makes the world perform the effects? (issue 29: the library recipe is chosen by
**train** identification, never on held-out effects.)

    python benchmarks/library_recipe.py --base tiny-b2 --effects spin-cw,zoom-in,melt,slide-left,swirl-cw,invert \
        --variant "lib:" --variant "long:steps=600" --variant "r16:rank=16,alpha=16.0" [--sheet DIR]

Each variant = recipes/library-tiny.yaml plus its overrides. For each one, in a fresh registry home of its own
(the base registered there from the same folder, so nothing is shared or reused), it trains one reference LoRA
per effect exactly as `p2e train lora --recipe library-tiny` does, renders each on the identification photos
with the default render settings and the effect's caption (as `p2e eval run` does), and prints per effect the
rank of its own ground truth (1 = identified) and the nearest candidate, then per variant top-1 / top-5 and the
training time. Train effects only: a held-out effect given in --effects is refused.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path


def main() -> None:
    from p2e_cli import effects as fx
    from p2e_cli import identify
    from p2e_cli.catalog import resolve_base
    from p2e_cli.lora_jobs import train_loras
    from p2e_cli.recipes import load_recipe
    from p2e_cli.registry import open_registry, set_home
    from p2e_cli.render import Renderer, RenderParams, resolve_lora
    from p2e_cli.wan import base_settings, describe_base

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="tiny", help="registered base (its folder is registered anew per variant)")
    parser.add_argument("--effects", default="spin-cw,zoom-in,melt,slide-left,swirl-cw,invert")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,key=value (repeatable)")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="write DIR/NAME.png per variant: truth / render rows on the first identification photo")
    args = parser.parse_args()
    effects = [e for e in args.effects.split(",") if e]
    heldout = [e for e in effects if fx.get_effect(e).split != "train"]
    if heldout:
        raise SystemExit(f"train effects only (the recipe is chosen without the test split): {', '.join(heldout)}")
    folder = Path(resolve_base(args.base).data["path"])
    for name, overrides in (v.split(":", 1) for v in args.variant or ["lib:"]):
        with tempfile.TemporaryDirectory() as home:
            set_home(home)
            open_registry().add("base", name="probe", data=describe_base(folder))
            cfg = load_recipe("library-tiny", ["base=probe", *[o for o in re.split(r",(?![^\[]*\])", overrides) if o]],
                              kind="lora")
            start = time.perf_counter()
            records = train_loras(effects, cfg)
            seconds = time.perf_counter() - start
            reg = open_registry()
            base = resolve_base("probe")
            renderer, size = Renderer(base), base_settings(base)["size"][1]
            rows, shown = [], []
            for record in records:
                effect = record.data["effect"]
                lora = resolve_lora(f"lora:{record.id}", reg)
                params = RenderParams(prompt=fx.get_effect(effect).prompts[0], seed=0)
                renders = identify.render_on_photos(lambda image: renderer.render(image, [lora], params), size)
                result = identify.identify(effect, renders)
                rows.append({"effect": effect, "split": "train", "ident_ref": result})
                shown.append((effect, {"reference": renders[identify.PHOTOS[0]]}))
                print(f"{name}: {effect:14s} ranks {result['ranks']}  nearest {result['nearest']}  "
                      f"val loss {record.data['val_loss']['base']:.3f} -> {record.data['val_loss']['lora']:.3f}", flush=True)
            if args.sheet is not None:
                args.sheet.mkdir(parents=True, exist_ok=True)
                identify.sheet(shown, identify.PHOTOS[0], args.sheet / f"{name}.png")
            summary = identify.summarize(rows, "ref")["train"]
            print(f"{name}: {overrides or '(library-tiny)'}  top-1 {summary['top1']:.2f}  top-5 {summary['top5']:.2f}  "
                  f"({len(effects)} effects, {seconds / 60:.1f} min of training)", flush=True)
        set_home(None)


if __name__ == "__main__":
    main()
