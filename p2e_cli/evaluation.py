"""Measuring LoRAs against exact ground truth (p2e eval run).

For each library effect with a reference LoRA on the base, on clips of held-out photos:
- validation flow-matching losses with fixed noise and timesteps (training.validation_loss):
  L0 (bare base), L_ref (reference LoRA), and with a hypernetwork L_pred (its LoRA for an unseen
  paraphrase, or for a held-out effect's prompt), recovery R = (L0 - L_pred) / (L0 - L_ref), and
  three controls: the LoRA generated from another effect's prompt (misaligned), from a random
  string, and the prompt-blind mean of the train library's references (what a network ignoring
  the prompt could at best write); the right prompt's LoRA must beat them, or the hypernetwork
  is not reading the prompt;
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
import statistics
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from . import adapters, console, curate
from . import effects as fx
from .catalog import effect_references
from .errors import P2EError
from .lora_io import read_lora
from .metrics import delta_agreement, pooled_recovery, recovery
from .registry import Record, Registry

RANDOM_PROMPT = "qorvex plimb taduk snerf"  # a fixed random string: the no-information control
LIBRARY_MEAN = "<mean of the hypernetwork's train library>"  # the prompt-blind control: not a prompt, one LoRA for all
SLOTS = ("ref", "pred", "misaligned", "random", "mean")
CONTROLS = ("misaligned", "random", "mean")


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
        out[kind] = spectrum_summary([layer for layer in layers if layer is not None])
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
                     f"from the prediction (speedup {_cell(rows[-1]['speedup']) or 'n/a'})")
    return rows


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The report's top-level figures: median recovery (train effects with unseen paraphrases,
    held-out effects), median held-out ΔW NMSE, median fine-tune speedup."""
    summary = report["summary"]
    speedups = [r["speedup"] for r in report.get("finetune", []) if r["speedup"] is not None]
    ident = report.get("identification", {})

    def top1(slot: str, split: str) -> float | None:
        return ident.get(slot, {}).get(split, {}).get("top1")

    return {"recovery_train": summary.get("train", {}).get("recovery_median"),
            "recovery_heldout": summary.get("heldout", {}).get("recovery_median"),
            "recovery_pooled_train": summary.get("train", {}).get("recovery_pooled"),
            "recovery_pooled_heldout": summary.get("heldout", {}).get("recovery_pooled"),
            "nmse_heldout": summary.get("heldout", {}).get("nmse_median"),
            "finetune_speedup": statistics.median(speedups) if speedups else None,
            "ident_ref_train": top1("ref", "train"), "ident_ref_heldout": top1("ref", "heldout"),
            "ident_pred_train": top1("pred", "train"), "ident_pred_heldout": top1("pred", "heldout"),
            "ident_base": top1("base", "all"),
            **{k: v for k, v in report.get("vae_psnr", {}).items() if k != "per_effect"}}


def plot_report(report: dict[str, Any], out) -> list:
    """PNGs in `out`: recovery R per effect (train and held-out), the fine-tune curves (scratch vs
    from the prediction), and the spectrum gap (predicted vs reference ΔW in W0's singular basis).
    Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = [r for r in report["effects"] if r.get("recovery") is not None]
    if rows:
        rows.sort(key=lambda r: (r["split"] != "heldout", -r["recovery"]))
        fig, ax = plt.subplots(figsize=(max(6, 0.16 * len(rows)), 3.6))
        ax.bar(range(len(rows)), [max(-1.0, min(2.0, r["recovery"])) for r in rows],
               color=["tab:orange" if r["split"] == "heldout" else "tab:blue" for r in rows])
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(len(rows)), [r["effect"] for r in rows], rotation=90, fontsize=5)
        ax.set_ylabel("recovery R (clipped to [-1, 2])")
        ax.set_title("R = (L0 - L_pred) / (L0 - L_ref); orange: held-out effects, blue: train (unseen paraphrase)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "recovery.png", dpi=150)
        plt.close(fig)
        written.append(out / "recovery.png")
    if report.get("finetune"):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for i, r in enumerate(report["finetune"]):
            color = f"C{i}"
            ax.plot(*zip(*r["curve_scratch"]), color=color, ls="--", lw=1)
            ax.plot(*zip(*r["curve_init"]), color=color, lw=1.5, label=r["effect"])
            ax.axhline(r["target_loss"], color=color, lw=0.5, ls=":")
        ax.set_xlabel("fine-tune step")
        ax.set_ylabel("validation loss")
        ax.set_title("fine-tune: dashed from scratch, solid from the predicted LoRA", fontsize=9)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / "finetune.png", dpi=150)
        plt.close(fig)
        written.append(out / "finetune.png")
    spectra = {split: v for split, v in report.get("spectrum", {}).items() if split != "all"}
    if spectra:
        fig, axes = plt.subplots(1, len(spectra), figsize=(4.2 * len(spectra), 3.6), squeeze=False)
        for ax, (split, v) in zip(axes[0], spectra.items()):
            x = v["reference"]["fractions"]
            ax.plot(x, v["reference"]["w0"], color="tab:blue", lw=1.5, label="W0")
            ax.plot(x, v["reference"]["delta_left"], color="tab:red", lw=2, label="reference ΔW")
            ax.plot(x, v["predicted"]["delta_left"], color="tab:green", lw=2, ls="--", label="predicted ΔW")
            ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":")
            ax.set_title(f"{split} effects", fontsize=9)
            ax.set_xlabel("k / min(out, in)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("energy in W0's top-k left subspace")
        axes[0][0].legend(fontsize=7, loc="lower right")
        fig.suptitle("spectrum gap: where predicted vs reference ΔW put their energy", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "spectrum.png", dpi=150)
        plt.close(fig)
        written.append(out / "spectrum.png")
    return written


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fraction(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(bool(v) for v in values) / len(values) if values else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and fractions per split (train, heldout) and over all effects."""
    out: dict[str, Any] = {}
    for split in ("train", "heldout", "all"):
        part = [r for r in rows if split == "all" or r["split"] == split]
        if not part:
            continue
        s = {"effects": len(part), "ref_ratio_median": _median([r["ref_ratio"] for r in part]),
             "ref_ratio_worst": max(r["ref_ratio"] for r in part),
             "ref_render_better": _fraction([r.get("ref_render_better") for r in part])}
        if "recovery" in part[0]:
            s.update(recovery_median=_median([r["recovery"] for r in part]), recovery_pooled=pooled_recovery(part),
                     nmse_median=_median([r["nmse"] for r in part]), cosine_median=_median([r["cosine"] for r in part]),
                     beats_misaligned=_fraction([r["beats_misaligned"] for r in part]),
                     beats_random=_fraction([r["beats_random"] for r in part]),
                     beats_mean=_fraction([r.get("beats_mean") for r in part]),
                     recovery_mean_median=_median([r.get("recovery_mean") for r in part]),
                     pred_render_better=_fraction([r.get("pred_render_better") for r in part]),
                     render_recovery_median=_median([r.get("render_recovery") for r in part]),
                     nmse_block_medians={b: _median([r["nmse_blocks"][b] for r in part]) for b in part[0]["nmse_blocks"]})
        out[split] = s
    return out


def results_markdown(report: dict[str, Any]) -> str:
    """A results.md: the summary table per split, then one row per effect."""
    lines = [f"# Evaluation on base {report.get('base_name') or report['base']}", ""]
    top = {k: report.get(k) for k in ("recovery_train", "recovery_heldout", "recovery_pooled_train", "recovery_pooled_heldout",
                                      "nmse_heldout", "finetune_speedup")}
    lines += ["| " + " | ".join(top) + " |", "|" + " --- |" * len(top), "| " + " | ".join(_cell(v) for v in top.values()) + " |"]
    if report.get("identification"):
        lines += ["", "## Effect identification (top-1 / top-5 on held-out photos)", "",
                  "| renders | split | all | geometric | photometric | composition |", "| --- | --- | --- | --- | --- | --- |"]
        for slot, splits in report["identification"].items():
            for split, v in splits.items():
                cells = [f"{v['top1']:.2f} / {v['top5']:.2f}"] + [
                    f"{v['groups'][g]['top1']:.2f} / {v['groups'][g]['top5']:.2f}" if g in v["groups"] else ""
                    for g in ("geometric", "photometric", "composition")]
                lines.append(f"| {slot} | {split} | " + " | ".join(cells) + " |")
        psnr = report.get("vae_psnr", {})
        lines += ["", f"VAE round trip of every effect's ground truth: median {_cell(psnr.get('vae_psnr_effects_median'))} dB, "
                      f"p10 {_cell(psnr.get('vae_psnr_effects_p10'))}, min {_cell(psnr.get('vae_psnr_effects_min'))}; "
                      f"neutral clips {_cell(psnr.get('vae_psnr_neutral'))} dB"]
    lines += ["", "## Summary", ""]
    keys = sorted({k for s in report["summary"].values() for k, v in s.items() if not isinstance(v, dict)})
    lines += ["| split | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for split, s in report["summary"].items():
        lines.append(f"| {split} | " + " | ".join(_cell(s.get(k)) for k in keys) + " |")
    blocks = {split: s["nmse_block_medians"] for split, s in report["summary"].items() if s.get("nmse_block_medians")}
    if blocks:
        names = list(next(iter(blocks.values())))
        lines += ["", "## ΔW NMSE per block (median over effects)", "", "| split | " + " | ".join(names) + " |",
                  "| --- |" + " --- |" * len(names)]
        lines += [f"| {split} | " + " | ".join(_cell(v.get(n)) for n in names) + " |" for split, v in blocks.items()]
    if report.get("spectrum"):
        lines += ["", "## Spectrum gap (k/n where ΔW reaches 50% / 90% of its energy in W0's top-k left subspace)", "",
                  "| split | reference k50 | predicted k50 | reference k90 | predicted k90 |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {split} | " + " | ".join(_cell(v[kind][f"delta_left_{k}"]) for k in ("k50", "k90")
                                                 for kind in ("reference", "predicted")) + " |"
                  for split, v in report["spectrum"].items()]
    if report.get("finetune"):
        cols = ["prompt", "base_loss", "target_loss", "steps_scratch", "steps_init", "speedup", "bound"]
        lines += ["", "## Fine-tune speedup", "", "| effect | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
        lines += [f"| {r['effect']} | " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in report["finetune"]]
    cols = [c for c in ("split", "L0", "L_ref", "L_pred", "ref_ratio", "recovery", "nmse", "cosine", "L_misaligned",
                        "L_random", "L_mean", "recovery_mean", "mse_base", "mse_ref", "mse_pred") if c in report["effects"][0]]
    lines += ["", "## Per effect", "", "| effect | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    for r in report["effects"]:
        lines.append(f"| {r['effect']} | " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def run_ablations(reg: Registry, cfg, base_name: str | None = None, overrides: list[str] = (),
                  on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train every variant of an AblationsRecipe (reusing a variant's hypernetwork when one with the
    same recipe exists, so an interrupted table continues) and measure each on held-out effects:
    ΔW NMSE and validation-loss recovery R. `on_row` gets the table so far after each variant."""
    from .hypernet.store import Generator
    from .hypernet.train import run_training
    from .recipes import load_recipe
    from .catalog import resolve_base

    rows = []
    heldout = fx.effect_names("heldout")
    for variant, changes in cfg.variants.items():
        extra = [*cfg.overrides, *changes, f"steps={cfg.steps}", "name=''"] + ([f"base={base_name}"] if base_name else []) + list(overrides)
        hcfg = load_recipe(cfg.hypernet, extra, kind="hypernet")
        done = [r for r in reg.ls("hypernet") if r.data.get("ablation") and same_recipe(r.data.get("recipe"), hcfg)]
        # a variant interrupted mid-training continues from its run's last checkpoint
        stopped = [r for r in reg.ls("run") if r.data.get("task") == "train hypernet" and r.data.get("status") == "running"
                   and r.data.get("checkpoint") and same_recipe(r.data.get("recipe"), hcfg)]
        if done:
            record = done[0]
            console.info(f"ablation {variant}: reusing hypernet {record.id}")
        else:
            resume = max(stopped, key=lambda r: r.created).id if stopped else None
            console.info(f"ablation {variant}: " + (f"resuming run {resume}" if resume else
                                                    f"training ({', '.join(changes) or 'the full model'})"))
            record = run_training(hcfg, resume=resume)
            record = reg.update(record.id, data={"ablation": {"variant": variant}})
        base = resolve_base(hcfg.base)
        # the held-out measurement is kept on the record, valid while the references and clip count stay
        measured_on = {"val_clips": cfg.val_clips, "references": sorted(r.id for r in effect_references(reg, base, heldout).values())}
        kept = record.data["ablation"].get("heldout")
        if kept and kept.get("measured_on") == measured_on:
            summary = kept["summary"]
        else:
            generator = Generator(reg.path(record.files["weights"]), base, reg.folder("cache", "hypernet"))
            report = evaluate(reg, base, heldout, generator, EvalOptions(val_clips=cfg.val_clips, render=False))
            summary = report["summary"].get("heldout", {})
            record = reg.update(record.id, data={"ablation": {**record.data["ablation"],
                                                              "heldout": {"measured_on": measured_on, "summary": summary}}})
        metrics = record.data.get("metrics", {})
        rows.append({"variant": variant, "overrides": changes, "hypernet": record.id,
                     "validation_nmse": metrics.get("validation_nmse"),
                     "heldout_nmse": metrics.get("heldout_nmse"), "unseen_prompt_nmse": metrics.get("unseen_prompt_nmse"),
                     "recovery_heldout": summary.get("recovery_median"), "cosine_heldout": summary.get("cosine_median"),
                     "beats_misaligned": summary.get("beats_misaligned")})
        if on_row is not None:
            on_row({"steps": cfg.steps, "rows": rows})
    return {"steps": cfg.steps, "rows": rows}


def same_recipe(stored: dict[str, Any] | None, cfg) -> bool:
    """Whether a recipe recorded by an earlier run is `cfg`, once both carry today's defaults (a
    key added to the schema since then, at its default, changes nothing)."""
    from .recipes import parse_recipe, to_dict

    try:
        return stored is not None and to_dict(parse_recipe(stored)) == to_dict(cfg)
    except P2EError:
        return False


def ablations_markdown(table: dict[str, Any]) -> str:
    cols = ["heldout_nmse", "unseen_prompt_nmse", "recovery_heldout", "cosine_heldout", "beats_misaligned"]
    if any(r.get("validation_nmse") is not None for r in table["rows"]):  # variants with validation_effects
        cols.insert(0, "validation_nmse")
    lines = [f"# Ablations ({table['steps']} training steps each; held-out effects)", "",
             "| variant | overrides | " + " | ".join(cols) + " |", "| --- | --- |" + " --- |" * len(cols)]
    for r in table["rows"]:
        lines.append(f"| {r['variant']} | {' '.join(r['overrides']) or '-'} | " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"
