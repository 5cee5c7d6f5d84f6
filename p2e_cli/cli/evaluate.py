"""p2e eval: measure a hypernetwork against the reference library and the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console
from ..errors import P2EError

app = typer.Typer(name="eval", help="Evaluate a hypernetwork: recovery, NMSE, render alignment, controls.",
                  no_args_is_help=True)



def write_pair(out: Path, json_name: str, data: dict, markdown_name: str, markdown: str) -> None:
    """A result as JSON plus its markdown table, written atomically into `out`."""
    import json

    from ..files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / json_name) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
    with atomic_write(out / markdown_name) as tmp:
        tmp.write_text(markdown)


@app.command("run")
def run(split: str = typer.Option("all", "--split", help="Effects to evaluate: train, heldout or all."),
        effects: Optional[List[str]] = typer.Option(None, "--effect", help="Only these effects (repeatable)."),
        base: Optional[str] = typer.Option(None, "--base", help="Base (default: the embedded tiny world)."),
        hypernet: Optional[str] = typer.Option(None, "--hypernet", help="Hypernetwork id/name or file (default: the "
                                                                         "newest for the base)."),
        reference_only: bool = typer.Option(False, "--reference-only", help="Evaluate the reference library alone "
                                                                              "(L_ref/L0, render MSE vs base)."),
        val_clips: int = typer.Option(4, "--val-clips", help="Held-out-photo clips per effect."),
        render: bool = typer.Option(True, "--render/--no-render", help="Also measure render MSE to the ground truth."),
        identify: bool = typer.Option(True, "--identify/--no-identify", help="With --render: effect identification of the "
                                      "base, reference and predicted renders on held-out photos (+ identification.png)."),
        finetune: int = typer.Option(0, "--finetune", help="Measure the fine-tune speedup on this many effects "
                                                            "(held-out ones first): scratch vs from the prediction."),
        finetune_recipe: str = typer.Option("library-tiny", "--finetune-recipe", help="LoRA recipe of the fine-tunes "
                                                                                       "(the reference library's)."),
        finetune_set: List[str] = typer.Option([], "--finetune-set", help="Override a key of that recipe (repeatable), "
                                                                           "e.g. validate_every=10."),
        precision: str = typer.Option("fp32", "--precision", help="Run the hypernetwork in fp32 (its own figures, the "
                                                                  "same on every machine), bf16, or auto (as generate)."),
        out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write report.json, results.md and plots into this folder.")) -> None:
    """Measure LoRAs against the procedural ground truth on held-out photos: L0 / L_ref / L_pred and
    recovery R, ΔW NMSE and cosine, misaligned- and random-prompt controls, render MSE, and with
    --finetune N the fine-tune speedup from the hypernetwork's LoRAs.

    Example: p2e eval run --split heldout --finetune 4 -o eval/
    """
    from .. import effects as fx
    from ..eval_report import headline, plot_report, results_markdown
    from ..evaluation import EvalOptions, evaluate, finetune_speedup
    from ..registry import open_registry
    from ..catalog import resolve_base
    from ..wan import load_pipeline

    if val_clips < 1:
        raise P2EError(f"--val-clips must be at least 1, got {val_clips}")
    names = list(effects) if effects else fx.effect_names(split)
    for name in names:
        fx.get_effect(name)
    reg = open_registry()
    base_record = resolve_base(base)
    generator = None
    if not reference_only:
        from ..hypernet.store import Generator
        from ..catalog import resolve_hypernet

        path, _ = resolve_hypernet(reg, hypernet, base_record)
        generator = Generator(path, base_record, reg.folder("cache", "hypernet"), precision=precision)
    if finetune < 0:
        raise P2EError(f"--finetune must be 0 or more, got {finetune}")
    if finetune and generator is None:
        raise P2EError("--finetune measures fine-tuning from the hypernetwork's LoRAs; drop --reference-only")
    ft_cfg = None
    if finetune:
        from ..recipes import load_recipe

        ft_cfg = load_recipe(finetune_recipe, [f"base={base_record.name or base_record.id}", *finetune_set], kind="lora")
    pipe = load_pipeline(base_record)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    options = EvalOptions(val_clips=val_clips, render=render, identify=identify,
                          sheet=out / "identification.png" if out is not None else None)
    report = evaluate(reg, base_record, names, generator, options, pipe=pipe)
    if finetune:
        evaluated = [r["effect"] for r in report["effects"]]
        sample = sorted(evaluated, key=lambda e: fx.get_effect(e).split == "train")[:finetune]
        report["finetune"] = finetune_speedup(reg, base_record, sample, generator, ft_cfg, pipe=pipe)
    report = {**headline(report), **report}
    if out is not None:
        write_pair(out, "report.json", report, "results.md", results_markdown(report))
        plot_report(report, out)

    def show() -> None:
        for split_name, s in report["summary"].items():
            console.out.print(f"[bold]{split_name}[/bold] ({s['effects']} effects): "
                              + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in s.items() if k != "effects"))
        console.out.print(", ".join(f"{k} {_num(report[k])}" for k in ("recovery_train", "recovery_heldout",
                                                                       "nmse_heldout", "finetune_speedup")))
        if report.get("ident_ref_train") is not None or report.get("ident_ref_heldout") is not None:
            console.out.print("identified (top-1): " + ", ".join(f"{k[6:]} {_num(report.get(k))}" for k in (
                "ident_ref_train", "ident_ref_heldout", "ident_pred_train", "ident_pred_heldout", "ident_base")))
        if out is not None:
            console.info(f"wrote {out / 'report.json'} and {out / 'results.md'}")

    console.result(report, show)



@app.command("ablations")
def ablations(recipe: str = typer.Option("ablations", "--recipe", help="Ablations recipe: a file or a shipped name."),
              set_: List[str] = typer.Option([], "--set", help="Override a key of every variant's hypernet recipe "
                                                                "(e.g. --set batch_size=8)."),
              base: Optional[str] = typer.Option(None, "--base", help="Base (default: the hypernet recipe's)."),
              out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write ablations.json and ablations.md here.")) -> None:
    """Train every ablation variant with the same budget and tabulate held-out ΔW NMSE and recovery R (the paper's table: canonical vs raw targets, weights vs noise vs none, full vs half rank, 128/256/512 queries, unified vs ensemble). Re-running reuses variants already trained.

    Example: p2e eval ablations --recipe ablations -o docs/
    """
    from ..ablations import ablations_markdown, run_ablations
    from ..recipes import load_recipe
    from ..registry import open_registry

    cfg = load_recipe(recipe, [], kind="ablations")

    def write(table: dict) -> None:  # after every variant, so a long table shows its rows as they land
        if out is not None:
            write_pair(out, "ablations.json", table, "ablations.md", ablations_markdown(table))

    table = run_ablations(open_registry(), cfg, base, set_, on_row=write)
    write(table)
    console.result(table, lambda: console.out.print(ablations_markdown(table)))


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"
