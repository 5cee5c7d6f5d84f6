"""What `p2e eval run` writes from its measurements: per-split summaries, the headline figures of
docs/report.json, the PNG plots and the results.md tables. Reads report dicts only; measures nothing.
"""

from __future__ import annotations

import statistics
from typing import Any

from .metrics import pooled_recovery


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
            **{f"beats_{control}_{split}": summary.get(split, {}).get(f"beats_{control}")
               for control in ("misaligned", "opposite", "mean") for split in ("train", "heldout")},
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
            if v["predicted"] is not None:  # None: the network wrote zeros
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
                     beats_opposite=_fraction([r.get("beats_opposite") for r in part]),
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
    lines += ["| " + " | ".join(top) + " |", "|" + " --- |" * len(top), "| " + " | ".join(cell(v) for v in top.values()) + " |"]
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
        lines += ["", f"VAE round trip of every effect's ground truth: median {cell(psnr.get('vae_psnr_effects_median'))} dB, "
                      f"p10 {cell(psnr.get('vae_psnr_effects_p10'))}, min {cell(psnr.get('vae_psnr_effects_min'))}; "
                      f"neutral clips {cell(psnr.get('vae_psnr_neutral'))} dB"]
    lines += ["", "## Summary", ""]
    keys = sorted({k for s in report["summary"].values() for k, v in s.items() if not isinstance(v, dict)})
    lines += ["| split | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for split, s in report["summary"].items():
        lines.append(f"| {split} | " + " | ".join(cell(s.get(k)) for k in keys) + " |")
    blocks = {split: s["nmse_block_medians"] for split, s in report["summary"].items() if s.get("nmse_block_medians")}
    if blocks:
        names = list(next(iter(blocks.values())))
        lines += ["", "## ΔW NMSE per block (median over effects)", "", "| split | " + " | ".join(names) + " |",
                  "| --- |" + " --- |" * len(names)]
        lines += [f"| {split} | " + " | ".join(cell(v.get(n)) for n in names) + " |" for split, v in blocks.items()]
    if report.get("spectrum"):
        lines += ["", "## Spectrum gap (k/n where ΔW reaches 50% / 90% of its energy in W0's top-k left subspace)", "",
                  "| split | reference k50 | predicted k50 | reference k90 | predicted k90 |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {split} | " + " | ".join(cell((v[kind] or {}).get(f"delta_left_{k}")) for k in ("k50", "k90")
                                                 for kind in ("reference", "predicted")) + " |"
                  for split, v in report["spectrum"].items()]
    if report.get("finetune"):
        cols = ["prompt", "base_loss", "target_loss", "steps_scratch", "steps_init", "speedup", "bound"]
        lines += ["", "## Fine-tune speedup", "", "| effect | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
        lines += [f"| {r['effect']} | " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in report["finetune"]]
    cols = [c for c in ("split", "L0", "L_ref", "L_pred", "ref_ratio", "recovery", "nmse", "cosine", "L_misaligned",
                        "L_random", "L_opposite", "L_mean", "recovery_mean", "mse_base", "mse_ref", "mse_pred")
            if any(c in r for r in report["effects"])]
    lines += ["", "## Per effect", "", "| effect | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    for r in report["effects"]:
        lines.append(f"| {r['effect']} | " + " | ".join(cell(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)

