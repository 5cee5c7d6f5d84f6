"""Measuring LoRAs against exact ground truth (p2e eval run).

For each library effect with a reference LoRA on the base, on clips of held-out photos:
- validation flow-matching losses with fixed noise and timesteps (training.validation_loss):
  L0 (bare base), L_ref (reference LoRA), and with a hypernetwork L_pred (its LoRA for an unseen
  paraphrase, or for a held-out effect's prompt), recovery R = (L0 - L_pred) / (L0 - L_ref), and
  four controls: the LoRA generated from another effect's prompt (misaligned), from a random
  string, from the same prompt with its direction / sense / colour word swapped (opposite, where it
  has one: effects/opposites.py), and the prompt-blind mean of the train library's references
  (what a network ignoring the prompt could at best write); the right prompt's LoRA must beat
  them, or the hypernetwork is not reading the prompt;
- ΔW agreement of predicted vs reference: NMSE and cosine over all layers, NMSE per block, and
  the spectrum gap (where each puts its energy in W0's singular basis);
- render alignment: MSE to the procedural ground truth of clips rendered from the held-out photo's
  first frame with the same seed: base, reference, predicted;
- effect identification (identify.py): base, reference and predicted renders on held-out photos,
  ranked against every library effect's exact ground truth plus the still photo: top-1 / top-5.
All LoRAs are applied as routed adapters of one loaded transformer (adapters.StackedLoRA).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import adapters, console, curate
from . import effects as fx
from .catalog import effect_references
from .errors import P2EError
from .lora_io import read_lora
from .effects.opposites import opposite_prompt
from .eval_report import cell, summarize
from .metrics import delta_agreement, recovery
from .registry import Record, Registry

RANDOM_PROMPT = "qorvex plimb taduk snerf"  # a fixed random string: the no-information control
LIBRARY_MEAN = "<mean of the hypernetwork's train library>"  # the prompt-blind control: not a prompt, one LoRA for all
SLOTS = ("ref", "pred", "misaligned", "random", "mean", "opposite")
CONTROLS = ("misaligned", "random", "mean", "opposite")


@dataclass
class EvalOptions:
    val_clips: int = 4
    render: bool = True
    seed: int = 0
    identify: bool = True  # with render: effect identification of base / reference / predicted renders
    sheet: Any = None  # a PNG path: the identification contact sheet (identify.SHEET_EFFECTS)


def eval_prompt(spec: fx.Effect) -> str:
    """The prompt an effect is evaluated with: an unseen paraphrase for a train effect (the
    hypernetwork never trained on it), the effect's own first prompt for a held-out one."""
    return spec.heldout_prompts[0] if spec.split == "train" else spec.prompts[0]


def _scaled(lora) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{layer: (B, A)} with alpha/r folded in, ΔW = B·A."""
    return {n: (l.B.float() * l.scale, l.A.float()) for n, l in lora.layers.items()}


def _load(layers, index: int, factors: dict[str, tuple[torch.Tensor, torch.Tensor]], rank: int) -> None:
    """Adapter `index` := factors (B, A) with ΔW = B·A, zero-padded to `rank` (layers' alpha = rank)."""
    values = {}
    for name in layers:
        b, a = factors[name]
        pad = rank - b.shape[1]
        if pad < 0:
            raise P2EError(f"a LoRA of rank {b.shape[1]} does not fit the evaluation's rank {rank}")
        values[name] = (torch.cat([a, a.new_zeros(pad, a.shape[1])]), torch.cat([b, b.new_zeros(b.shape[0], pad)], dim=1))
    adapters.load_factors(layers, index, values)


def _validation_set(reg: Registry, base: Record, pipe, effect: str, settings: dict[str, Any], options: EvalOptions):
    from .encode import encode_clips, load_encoded

    size = tuple(settings["size"][::-1])
    curate.synth(reg, [fx.get_effect(effect)], options.val_clips, settings["frames"], size, seed=options.seed, photos="heldout")
    clips = curate.list_clips(reg, effect, "heldout")[: options.val_clips]
    encode_clips(reg, base, clips, pipe)
    latents, text = load_encoded(reg, base, clips)
    return clips, latents, text


def evaluate(reg: Registry, base: Record, effects: list[str], generator=None,
             options: EvalOptions | None = None, pipe=None) -> dict[str, Any]:
    """Per-effect figures and their medians (see the module docstring). `generator`: a
    hypernet.store.Generator, or None to evaluate the reference library alone; `pipe`: the base's
    loaded pipeline, when the caller has one (it is left as it was found)."""
    from .render import Renderer, RenderParams
    from .training import validation_loss
    from .wan import base_settings, load_pipeline

    options = options or EvalOptions()
    refs = effect_references(reg, base, effects)
    missing = [e for e in effects if e not in refs]
    if missing:
        console.warn(f"{len(missing)} effect(s) have no reference LoRA on base {base.name or base.id} and are skipped: "
                     f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    effects = [e for e in effects if e in refs]
    if not effects:
        raise P2EError(f"no effect to evaluate has a reference LoRA on base {base.name or base.id}",
                       hint="train them first: p2e train lora --all --split all --recipe library-tiny")
    settings = base_settings(base)
    pipe = pipe or load_pipeline(base)
    ref_files = {e: read_lora(reg.path(refs[e].files["lora"])) for e in effects}
    names = sorted(next(iter(ref_files.values())).layers)
    rank = max(max(l.ranks) for l in ref_files.values())
    prompts, predicted = {}, {}
    if generator is not None:
        rank = max(rank, generator.rank)
        spec = [fx.get_effect(e) for e in effects]
        prompts = {e.name: {"pred": eval_prompt(e),
                            "misaligned": spec[(i + 1) % len(spec)].prompts[0] if len(spec) > 1 else RANDOM_PROMPT,
                            "random": RANDOM_PROMPT} for i, e in enumerate(spec)}
        for e in spec:  # the same prompt with its direction / sense / colour word swapped, where it has one
            if (opposite := opposite_prompt(eval_prompt(e))) is not None:
                prompts[e.name]["opposite"] = opposite
        wanted = sorted({p for v in prompts.values() for p in v.values()})
        predicted = dict(zip(wanted, generator(wanted)))
        mean = library_mean(reg, base, [effect for effect, _ in generator.meta["library"]], rank)
        if mean is not None:
            predicted[LIBRARY_MEAN] = mean
            for v in prompts.values():
                v["mean"] = LIBRARY_MEAN
    w0 = {n: pipe.transformer.get_submodule(n).weight.detach() for n in names} if generator is not None else {}
    layers = adapters.inject(pipe.transformer, names, [options.seed] * len(SLOTS), rank, float(rank))
    renderer = Renderer(base, pipe=pipe) if options.render else None
    rows = []
    try:
        with console.progress("evaluate", total=len(effects)) as advance:
            for effect in effects:
                rows.append(_one(reg, base, pipe, effect, refs[effect], ref_files[effect], prompts.get(effect), predicted,
                                 layers, rank, settings, options, renderer, validation_loss, RenderParams))
                advance()
    finally:
        adapters.remove(pipe.transformer, layers)
    shown = {r["effect"]: r.pop("_renders") for r in rows if "_renders" in r}
    report = {"base": base.id, "base_name": base.name, "effects": rows, "summary": summarize(rows)}
    if renderer is not None and options.identify:
        from . import identify
        from .metrics import vae_psnr
        from .world.quality import heldout_neutral_clips

        if options.sheet is not None and shown:
            identify.sheet([(e, shown[e]) for e in identify.SHEET_EFFECTS if e in shown], identify.PHOTOS[0], options.sheet)

        report["identification"] = {slot: identify.summarize(rows, slot) for slot in ("base", "ref", "pred")
                                    if any(f"ident_{slot}" in r for r in rows)}
        per_effect = identify.vae_effect_psnr(pipe.vae, settings["size"][1], settings["frames"])
        neutral = heldout_neutral_clips(8, settings["frames"], settings["size"][1])
        report["vae_psnr"] = {**identify.psnr_summary(per_effect), "vae_psnr_neutral": vae_psnr(pipe.vae, neutral),
                              "per_effect": per_effect}
    if generator is not None:
        report["precision"] = generator.precision
        report["spectrum"] = {split: spectrum_gap(w0, [(predicted[prompts[r["effect"]]["pred"]], _scaled(ref_files[r["effect"]]))
                                                       for r in rows if split == "all" or r["split"] == split])
                              for split in report["summary"]}
    return report


def library_mean(reg: Registry, base: Record, effects: list[str], rank: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """The prompt-blind control: the mean ΔW of the reference LoRAs of `effects` (the effects the
    hypernetwork learned), as the best rank-`rank` LoRA per layer: what a network that ignored
    the prompt could at best write. None when none of them has a reference."""
    from .canon import mean_factors

    refs = effect_references(reg, base, effects)
    if not refs:
        return None
    files = [_scaled(read_lora(reg.path(record.files["lora"]))) for record in refs.values()]
    return {name: tuple(t.float() for t in mean_factors([f[name] for f in files], rank)) for name in files[0]}


def spectrum_gap(w0: dict[str, torch.Tensor], pairs: list[tuple[dict, dict]]) -> dict[str, Any]:
    """Where the predicted and the reference ΔWs put their energy in W0's singular basis: the mean
    curves of canon.layer_spectrum (the p2e canon spectrum figure) for each. pairs: one
    (predicted, reference) per effect, each {layer: (B, A)} with ΔW = B·A."""
    from .canon import layer_spectrum, spectrum_summary

    out = {}
    for kind, k in (("reference", 1), ("predicted", 0)):
        layers = [layer_spectrum(name, w, [(pair[k][name][0], pair[k][name][1], 1.0) for pair in pairs])
                  for name, w in w0.items()]
        layers = [layer for layer in layers if layer is not None]
        out[kind] = spectrum_summary(layers) if layers else None  # None: a side whose ΔW is zero everywhere
    return out


def _one(reg, base, pipe, effect, ref_record, ref_lora, prompts, predicted, layers, rank, settings, options, renderer,
         validation_loss, RenderParams) -> dict[str, Any]:
    spec = fx.get_effect(effect)
    clips, latents, text = _validation_set(reg, base, pipe, effect, settings, options)
    factors = {"ref": _scaled(ref_lora)}
    if prompts:
        for slot in ("pred", *CONTROLS):
            if slot in prompts:
                factors[slot] = {n: (b, a) for n, (b, a) in predicted[prompts[slot]].items()}
    for slot, values in factors.items():
        _load(layers, SLOTS.index(slot), values, rank)

    def loss(slot: str | None) -> float:
        index = SLOTS.index(slot) if slot else 0
        weight = 1.0 if slot else 0.0

        def routing(rows):
            return adapters.routed(layers, torch.full((len(rows),), index), torch.full((len(rows),), weight))

        return validation_loss(pipe.transformer, latents, text, f"eval/{effect}", before=routing)

    row: dict[str, Any] = {"effect": effect, "split": spec.split, "reference": ref_record.id, "clips": len(clips),
                           "L0": loss(None)}
    row.update({f"L_{slot}": loss(slot) for slot in factors})
    row["ref_ratio"] = row["L_ref"] / row["L0"]
    if prompts:
        row["recovery"] = recovery(row["L0"], row["L_pred"], row["L_ref"])
        row["prompts"] = prompts
        row["beats_misaligned"] = row["L_pred"] < row["L_misaligned"]
        row["beats_random"] = row["L_pred"] < row["L_random"]
        if "opposite" in factors:
            row["beats_opposite"] = row["L_pred"] < row["L_opposite"]
        if "mean" in factors:
            row["recovery_mean"] = recovery(row["L0"], row["L_mean"], row["L_ref"])
            row["beats_mean"] = row["L_pred"] < row["L_mean"]
        row.update(delta_agreement(factors["pred"], factors["ref"]))
    if renderer is not None:
        truth = curate.load_clip(reg, clips[0]).astype(np.float64)
        for slot in ["base", "ref"] + (["pred"] if prompts else []):
            params = RenderParams(prompt=spec.prompts[0], seed=options.seed, frames=len(truth))
            if slot == "base":
                clip = renderer.render(truth[0].astype(np.uint8), [], params)
            else:
                with adapters.routed(layers, torch.full((1,), SLOTS.index(slot))):
                    clip = renderer.render(truth[0].astype(np.uint8), [], params)
            row[f"mse_{slot}"] = float(np.mean((clip.astype(np.float64) - truth) ** 2))
        row["ref_render_better"] = row["mse_ref"] < row["mse_base"]
        if options.identify:
            row.update(_identification(renderer, layers, spec, prompts, options, RenderParams, settings["size"][1]))
        if prompts:
            row["render_recovery"] = recovery(row["mse_base"], row["mse_pred"], row["mse_ref"])
            row["pred_render_better"] = row["mse_pred"] < row["mse_base"]
    return row


def _identification(renderer, layers, spec, prompts, options, RenderParams, size: int) -> dict[str, Any]:
    """Effect identification of the base, reference and (with a hypernetwork) predicted renders, each
    with the prompt `p2e render` would use (the LoRA's own; the effect's for the base)."""
    from . import identify

    out, first = {}, {}
    for slot in ["base", "ref"] + (["pred"] if prompts else []):
        params = RenderParams(prompt=prompts["pred"] if slot == "pred" else spec.prompts[0], seed=options.seed)

        def render(image):
            if slot == "base":
                return renderer.render(image, [], params)
            with adapters.routed(layers, torch.full((1,), SLOTS.index(slot))):
                return renderer.render(image, [], params)

        renders = identify.render_on_photos(render, size)
        out[f"ident_{slot}"] = identify.identify(spec.name, renders)
        first[{"ref": "reference", "pred": "predicted"}.get(slot, slot)] = renders[identify.PHOTOS[0]]
    if spec.name in identify.SHEET_EFFECTS:
        out["_renders"] = first  # for the contact sheet; evaluate() takes it out of the row
    return out


def finetune_speedup(reg: Registry, base: Record, effects: list[str], generator, cfg, pipe=None) -> list[dict[str, Any]]:
    """The fine-tune speedup on a sample of effects. Per effect, two LoRAs train side by side with
    the LoRA recipe `cfg` (one transformer, routed adapters, identical batches): one from the
    recipe's own start (scratch: how the reference library was trained) and one from the LoRA the
    hypernetwork writes for the effect's prompt. Target = scratch's final validation loss (the
    reference's); speedup = steps scratch needs to reach it / steps the prediction needs, read off
    validation every cfg.validate_every steps (a prediction already at the target at step 0 counts as
    one interval: `bound` says "lower"; one that never reaches it within the budget counts as the
    budget: `bound` "upper")."""
    from .lora_jobs import effect_set, encode_all, flow_shift, gather
    from .lora_training import train_group
    from .wan import base_settings, layer_table, load_pipeline

    settings = base_settings(base)
    pipe = pipe or load_pipeline(base)
    names = [layer.name for layer in layer_table(pipe.transformer, cfg.targets)]
    if generator.rank != cfg.rank:
        raise P2EError(f"the hypernetwork writes rank {generator.rank} LoRAs but the fine-tune recipe trains rank {cfg.rank}",
                       hint=f"use a recipe of rank {generator.rank}")
    prompts = [eval_prompt(fx.get_effect(e)) for e in effects]
    rows = []
    for effect, prompt, predicted in zip(effects, prompts, generator(prompts)):
        d = gather(reg, effect, cfg, settings)
        encode_all(reg, base, pipe, [d])
        scratch = effect_set(reg, base, d, None)
        init = dataclasses.replace(scratch, init={n: (a, b) for n, (b, a) in predicted.items()}, init_alpha=float(cfg.rank))
        result = train_group(pipe.transformer, names, [scratch, init], cfg, shift=flow_shift(settings, pipe),
                             description=f"fine-tune {effect}"[:40])
        curves = [[(h["step"], h["val"]) for h in result.history if h["effect"] == i] for i in (0, 1)]
        target = curves[0][-1][1]
        reached = [next((step for step, value in curve if value <= target), None) for curve in curves]
        steps_init, bound = reached[1], None
        if steps_init is None:
            steps_init, bound = cfg.steps, "upper"
        elif steps_init == 0:
            steps_init, bound = cfg.validate_every, "lower"
        rows.append({"effect": effect, "prompt": prompt, "target_loss": target, "base_loss": result.base_loss[0],
                     "steps_scratch": reached[0], "steps_init": reached[1], "bound": bound,
                     # a scratch LoRA that never beats its step-0 loss (the base) gives no speedup to measure
                     "speedup": reached[0] / steps_init if reached[0] else None,
                     "curve_scratch": curves[0], "curve_init": curves[1]})
        console.info(f"fine-tune {effect}: reference loss {target:.4f} reached at step {reached[0]} from scratch, "
                     f"{'not within ' + str(cfg.steps) if reached[1] is None else 'at step ' + str(reached[1])} "
                     f"from the prediction (speedup {cell(rows[-1]['speedup']) or 'n/a'})")
    return rows


