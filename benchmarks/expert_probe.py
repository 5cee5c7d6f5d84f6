"""Can a base learn one effect at all? A full fine-tune per effect: the upper bound of any reference LoRA (issue 29).

    python benchmarks/expert_probe.py --base tiny19 --effects spin-cw,zoom-in,melt --steps 400 [--sheet out.png]

For each (train) effect: a copy of the base's transformer, every weight trained with the flow-matching loss on the
effect's library clips (the clips `p2e train lora` uses: train photos; synthesised if missing), AdamW, cosine lr.
Prints the validation loss on the held-out photos' clips before and after (the fixed draws `p2e train lora`
reports), then renders the fine-tuned model with the base's default render settings and the effect's caption on
the identification photos and prints the ranks of its own ground truth among all effects + the still photo
(1 = identified; `p2e eval run`'s identification). If a full fine-tune does not perform an effect, no low-rank
LoRA of the same budget will: the base is what has to change. Train effects only.

`--x0-sheet DIR` also writes DIR/EFFECT-x0.png: the first validation clip decoded, then what the fine-tuned model
predicts as the clean clip, x0 = x_sigma - sigma * v, from that clip noised to sigma 1 (pure noise, as a render
starts), 0.95, 0.8, 0.6 and 0.4 (the conditioning frame clean, as in training). A prediction that shows the
effect's layout from pure noise, while the render does not, points at sampling; one without it, at the model.

`--clips N` trains on N fresh clips of the effect instead of the library's (`curate.synth_clip` indices from
10000 on: the same train photos, random views and parameter jitter, N times more of them), encoded once. It
tells "the base cannot learn the transport" from "the library's clips are too few to learn it from".
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path


def main() -> None:
    import torch

    from p2e_cli import effects as fx
    from p2e_cli import identify
    from p2e_cli.catalog import resolve_base
    from p2e_cli.lora_jobs import effect_set, encode_all, flow_shift, gather
    from p2e_cli.recipes import load_recipe
    from p2e_cli.registry import open_registry
    from p2e_cli.render import Renderer, RenderParams
    from p2e_cli.training import flow_matching_loss, shifted_sigmas, validation_loss
    from p2e_cli.wan import base_settings, load_pipeline
    from p2e_cli.world.build import Checkpoints, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="tiny", help="registered base")
    parser.add_argument("--effects", default="spin-cw,zoom-in,melt")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sheet", type=Path, default=None, help="truth / fine-tuned rows on the first photo (PNG)")
    parser.add_argument("--x0-sheet", type=Path, default=None, help="folder for each effect's x0-prediction sheet")
    parser.add_argument("--clips", type=int, default=0, help="train on this many fresh clips (0: the library's)")
    args = parser.parse_args()
    effects = [e for e in args.effects.split(",") if e]
    if any(fx.get_effect(e).split != "train" for e in effects):
        raise SystemExit("train effects only")

    reg, base = open_registry(), resolve_base(args.base)
    settings = base_settings(base)
    cfg = load_recipe("library-tiny", [f"base={base.name or base.id}"], kind="lora")
    pipe = load_pipeline(base)
    frozen = pipe.transformer
    shift = flow_shift(settings, pipe)
    shown = []
    for effect in effects:
        data = gather(reg, effect, cfg, settings)
        encode_all(reg, base, pipe, [data])
        clips = effect_set(reg, base, data, None)
        if args.clips:
            clips.latents, clips.text = fresh_clips(pipe, effect, args.clips, settings)
        model = copy.deepcopy(frozen).float().train()
        before = validation_loss(model, clips.val_latents, clips.val_text, effect)

        def loss_at(step: int, clips=clips, model=model) -> torch.Tensor:
            g = torch.Generator().manual_seed(step)
            idx = torch.randint(len(clips.latents), (args.batch_size,), generator=g)
            latents = clips.latents[idx].float()
            sigmas = shifted_sigmas(torch.rand(args.batch_size, generator=g), shift)
            return flow_matching_loss(model, latents, clips.text[idx].float(), sigmas,
                                      torch.randn(latents.shape, generator=g)).mean()

        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:  # the world build's loop: AdamW, cosine lr, clip 1.0
            train(effect, model, loss_at, steps=args.steps, lr=args.lr, warmup=20, checkpoints=Checkpoints(Path(scratch)),
                  every=args.steps)
        seconds = time.perf_counter() - start
        model.eval()
        after = validation_loss(model, clips.val_latents, clips.val_text, effect)
        if args.x0_sheet is not None:
            x0_sheet(pipe.vae, model, clips.val_latents[:1].float(), clips.val_text[:1].float(),
                     args.x0_sheet / f"{effect}-x0.png")
        pipe.transformer = model
        renderer = Renderer(base, pipe=pipe)
        params = RenderParams(prompt=fx.get_effect(effect).prompts[0], seed=0)
        renders = identify.render_on_photos(lambda image: renderer.render(image, [], params), settings["size"][1])
        result = identify.identify(effect, renders)
        pipe.transformer = frozen
        shown.append((effect, {"full fine-tune": renders[identify.PHOTOS[0]]}))
        print(f"{base.name}: {effect:14s} validation loss {before:.3f} -> {after:.3f}  ranks {result['ranks']}  "
              f"nearest {result['nearest']}  ({args.steps} steps, {seconds / 60:.1f} min)", flush=True)
    if args.sheet is not None:
        identify.sheet(shown, identify.PHOTOS[0], args.sheet)


def fresh_clips(pipe, effect: str, n: int, settings: dict):
    """n clips of the effect drawn as the library draws its own (indices 10000.., seed 0), encoded: (latents, text)."""
    import numpy as np
    import torch

    from p2e_cli import effects as fx
    from p2e_cli.curate import synth_clip
    from p2e_cli.encode import encode_latents, encode_texts

    latents, captions = [], []
    for start in range(0, n, 16):
        batch = [synth_clip(fx.get_effect(effect), 10000 + i, 0, settings["frames"], tuple(settings["size"][::-1]))
                 for i in range(start, min(n, start + 16))]
        video = torch.from_numpy(np.stack([clip for clip, _ in batch])).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
        with torch.no_grad():
            latents.append(encode_latents(pipe, video).half())
        captions += [data["caption"] for _, data in batch]
    text = encode_texts(pipe, captions, settings["max_sequence_length"]).half()
    return torch.cat(latents), text


def x0_sheet(vae, model, latents, text, out: Path, sigmas=(1.0, 0.95, 0.8, 0.6, 0.4)) -> None:
    """Truth, then the model's x0 prediction from each noise level, decoded; one row each."""
    from functools import partial

    import torch

    from p2e_cli.encode import decode_latents
    from p2e_cli.training import flow_prediction
    from p2e_cli.video import contact_sheet, write_image

    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    decode = partial(decode_latents, vae)

    rows, labels = [decode(latents)], ["truth (VAE)"]
    with torch.no_grad():
        for sigma in sigmas:
            pred, target, first = flow_prediction(model, latents, text, torch.tensor([sigma]), noise)
            x0 = latents + sigma * (target - pred)
            x0[:, :, :first] = latents[:, :, :first]
            rows.append(decode(x0))
            labels.append(f"x0 from sigma {sigma}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(contact_sheet(rows, labels, max_columns=9), out)


if __name__ == "__main__":
    main()
