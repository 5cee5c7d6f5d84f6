"""`p2e eval ablations`: train each variant of an ablations recipe (the paper's switches) and
measure it on held-out effects (or, for a settings sweep, only on its validation figures), reusing
what an earlier, interrupted table already trained.
"""

from __future__ import annotations

from typing import Any, Callable

from . import console
from . import effects as fx
from .catalog import effect_references
from .errors import P2EError
from .eval_report import cell
from .evaluation import EvalOptions, evaluate
from .registry import Registry

# the training run's own figures at its last step (the flow phase logs R): validation ones choose settings
TRAINING_FIGURES = ("validation_nmse", "validation_recovery", "paraphrase_recovery", "unseen_prompt_nmse", "unseen_recovery")


def run_ablations(reg: Registry, cfg, base_name: str | None = None, overrides: list[str] = (),
                  on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train every variant of an AblationsRecipe (reusing a variant's hypernetwork when one with the
    same recipe exists, so an interrupted table continues) and measure each on held-out effects:
    ΔW NMSE and validation-loss recovery R (with `heldout: false`, the training run's own figures only:
    a sweep chosen on validation effects). `on_row` gets the table so far after each variant."""
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
        metrics = record.data.get("metrics", {})
        row = {"variant": variant, "overrides": changes, "hypernet": record.id,
               **{key: metrics.get(key) for key in TRAINING_FIGURES}}
        if cfg.heldout:
            summary, record = heldout_summary(reg, record, resolve_base(hcfg.base), heldout, cfg.val_clips)
            row.update(heldout_nmse=metrics.get("heldout_nmse"), recovery_heldout=summary.get("recovery_median"),
                       cosine_heldout=summary.get("cosine_median"), beats_misaligned=summary.get("beats_misaligned"))
        rows.append(row)
        if on_row is not None:
            on_row({"steps": cfg.steps, "rows": rows})
    return {"steps": cfg.steps, "rows": rows}



def heldout_summary(reg: Registry, record, base, heldout: list[str], val_clips: int):
    """p2e eval run's held-out summary of a variant's network, and its record. The measurement is kept
    on the record, valid while the references and the clip count stay."""
    from .hypernet.store import Generator

    measured_on = {"val_clips": val_clips, "references": sorted(r.id for r in effect_references(reg, base, heldout).values())}
    kept = record.data["ablation"].get("heldout")
    if kept and kept.get("measured_on") == measured_on:
        return kept["summary"], record
    generator = Generator(reg.path(record.files["weights"]), base, reg.folder("cache", "hypernet"))
    report = evaluate(reg, base, heldout, generator, EvalOptions(val_clips=val_clips, render=False))
    summary = report["summary"].get("heldout", {})
    record = reg.update(record.id, data={"ablation": {**record.data["ablation"],
                                                      "heldout": {"measured_on": measured_on, "summary": summary}}})
    return summary, record


def same_recipe(stored: dict[str, Any] | None, cfg) -> bool:
    """Whether a recipe recorded by an earlier run is `cfg`, once both carry today's defaults (a
    key added to the schema since then, at its default, changes nothing)."""
    from .recipes import parse_recipe, to_dict

    try:
        return stored is not None and to_dict(parse_recipe(stored)) == to_dict(cfg)
    except P2EError:
        return False



def ablations_markdown(table: dict[str, Any]) -> str:
    order = [*TRAINING_FIGURES, "heldout_nmse", "recovery_heldout", "cosine_heldout", "beats_misaligned"]
    cols = [c for c in order if any(r.get(c) is not None for r in table["rows"])]  # e.g. validation_* needs validation effects
    measured = "held-out effects" if any("recovery_heldout" in r for r in table["rows"]) else "held-out effects not measured"
    lines = [f"# Ablations ({table['steps']} training steps each; {measured})", "",
             "| variant | overrides | " + " | ".join(cols) + " |", "| --- | --- |" + " --- |" * len(cols)]
    for r in table["rows"]:
        lines.append(f"| {r['variant']} | {' '.join(r['overrides']) or '-'} | " + " | ".join(cell(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"

