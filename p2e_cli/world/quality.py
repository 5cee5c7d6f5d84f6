"""Quality figures of a world, all on held-out photos (never trained on):
VAE reconstruction PSNR on neutral clips, and the base's flow-matching validation loss on neutral
clips vs effect clips (a base must animate images, not already perform the effects).
"""

from __future__ import annotations

import numpy as np
import torch

from ..metrics import frames_psnr, vae_psnr
from .build import step_generator
from .corpus import neutral_clips, photo_bank
from .position import position_rmse


def heldout_neutral_clips(n: int, frames: int, size: int, seed: int = 1234) -> torch.Tensor:
    return neutral_clips(photo_bank("heldout", 2 * size), n, frames, size, step_generator(seed, "eval", 0))


def effect_validation_losses(reg, base, pipe, effects: list[str], clips: int, frames: int, size: int) -> dict[str, float]:
    """The base's flow-matching loss on each effect's held-out-photo clips (fixed draws)."""
    from .. import curate
    from .. import effects as fx
    from ..encode import encode_clips, load_encoded
    from ..training import validation_loss

    losses = {}
    for name in effects:
        curate.synth(reg, [fx.get_effect(name)], clips, frames, (size, size), seed=0, photos="heldout")
        records = curate.list_clips(reg, name, "heldout")[:clips]
        encode_clips(reg, base, records, pipe)
        latents, text = load_encoded(reg, base, records)
        losses[name] = validation_loss(pipe.transformer, latents, text, f"world-eval/{name}")
    return losses


def base_identification(renderer, size: int) -> dict:
    """The bare base rendered with each library effect's prompt on the identification photos: the share
    of effects identified as themselves (top-1, `rate`) and the per-effect results."""
    from .. import effects as fx
    from .. import identify as ident
    from ..console import progress
    from ..render import RenderParams

    rows = []
    with progress("identify base renders", total=len(fx.EFFECTS)) as advance:
        for effect in fx.EFFECTS:
            renders = ident.render_on_photos(lambda image: renderer.render(image, [], RenderParams(prompt=effect.caption)), size)
            rows.append({"effect": effect.name, "split": effect.split, "ident_base": ident.identify(effect.name, renders)})
            advance()
    return {"rate": ident.summarize(rows, "base")["all"]["top1"], "summary": ident.summarize(rows, "base"),
            "effects": {r["effect"]: r["ident_base"] for r in rows}}


def codec_report(vae, neutral: torch.Tensor, position_channels: int = 0, effects: bool = True) -> dict:
    """A world's VAE figures (`p2e world eval`; benchmarks/build_vae_check.py on a build's checkpoint): PSNR on the
    held-out `neutral` clips (B, 3, T, H, W), the position channels' RMS error on them when there are any, and with
    `effects` every library effect's round trip on the identification photos at the clips' size and length."""
    report = {"vae_psnr_heldout_clips": vae_psnr(vae, neutral)}
    if position_channels:
        report["vae_position_rmse"] = position_rmse(vae, neutral, position_channels)
    if effects:
        from .. import identify as ident

        per_effect = ident.vae_effect_psnr(vae, neutral.shape[-1], neutral.shape[2])
        report.update(ident.psnr_summary(per_effect), vae_psnr_effects=per_effect)
    return report


def world_report(base, photos: int = 4, clips: int = 8, effect_sample: int = 12, sheet=None, identify: bool = True) -> dict:
    """Every figure `p2e world eval` prints, measured on held-out photos only (a codec with position channels: also
    their error). With `identify`: the VAE
    round trip of every library effect's ground truth and the bare base's effect identification
    (rendered with each effect's prompt; a base must not perform effects by itself)."""
    from .. import effects as fx
    from ..encode import encode_latents, encode_texts
    from ..photos import load_photo, photo_names
    from ..registry import open_registry
    from ..render import Renderer, RenderParams
    from ..training import validation_loss
    from ..video import contact_sheet, write_image
    from ..wan import base_settings
    from .corpus import captions

    settings = base_settings(base)
    size, frames = settings["size"][1], settings["frames"]
    renderer = Renderer(base)
    pipe = renderer.pipe
    neutral = heldout_neutral_clips(clips, frames, size)
    report = codec_report(pipe.vae, neutral, settings.get("position_channels", 0), effects=identify)
    if identify:
        report["ident_base"] = base_identification(renderer, size)

    rows, first, later = [], [], []
    for name in photo_names("heldout")[:photos]:
        image = load_photo(name, size)
        clip = renderer.render(image, [], RenderParams(seed=0))
        rows.append(clip)
        first.append(frames_psnr(clip[0], image))
        later.append(float(np.mean([frames_psnr(f, image) for f in clip[1:]])))
    report["first_frame_psnr"] = float(np.mean(first))
    report["later_frames_psnr_vs_input"] = float(np.mean(later))
    report["later_frames_std"] = float(np.mean([clip[1:].std() for clip in rows]))
    if sheet is not None:
        write_image(contact_sheet(rows, photo_names("heldout")[:photos]), sheet)
        report["sheet"] = str(sheet)

    with torch.no_grad():
        latents = encode_latents(pipe, neutral)
        text = encode_texts(pipe, captions(clips, step_generator(7, "eval-captions", 0)), settings["max_sequence_length"])
    report["loss_neutral_heldout"] = validation_loss(pipe.transformer, latents, text, "world-eval/neutral")
    names = fx.effect_names("train")[:: max(1, len(fx.effect_names("train")) // effect_sample)][:effect_sample]
    per_effect = effect_validation_losses(open_registry(), base, pipe, names, 2, frames, size)
    values = sorted(per_effect.values())
    report["loss_effects_heldout"] = {"median": values[len(values) // 2], "min": values[0], "max": values[-1],
                                      "per_effect": per_effect}
    report["effects_above_neutral"] = sum(v > report["loss_neutral_heldout"] for v in values) / len(values)
    return report
