"""p2e train: reference LoRAs and the hypernetwork."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console
from ..errors import P2EError

app = typer.Typer(name="train", help="Train reference LoRAs and the hypernetwork.", no_args_is_help=True)


@app.command("lora")
def lora(effects: List[str] = typer.Argument(None, help="Effect name(s): library effects or curated real effects."),
         all_: bool = typer.Option(False, "--all", help="Every effect of --split (the reference library)."),
         split: str = typer.Option("train", "--split", help="With --all: train, heldout or all."),
         clips: Optional[Path] = typer.Option(None, "--clips", help="Ingest this folder of clips (video + .txt) as the effect first."),
         recipe: str = typer.Option("lora", "--recipe", help="LoRA recipe: file or shipped name."),
         set_: List[str] = typer.Option([], "--set", help="Override a recipe key: --set steps=500 (repeatable)."),
         base: Optional[str] = typer.Option(None, "--base", help="Base to train on (default: the recipe's base)."),
         out: Optional[Path] = typer.Option(None, "-o", "--out", help="Also write the LoRA file here (one effect only)."),
         name: Optional[str] = typer.Option(None, "--name", help="Registry name for the LoRA (one effect only)."),
         init: Optional[Path] = typer.Option(None, "--init", help="Start from this LoRA file instead of zero."),
         resume: Optional[str] = typer.Option(None, "--resume", help="Continue an interrupted run (its id)."),
         preview_every: Optional[int] = typer.Option(None, "--preview-every", metavar="N",
                                                     help="Every N steps, render a held-out photo with the LoRA so far "
                                                          "(PNG contact sheet stored on the run; shown by p2e show RUN)."),
         retrain: bool = typer.Option(False, "--retrain", help="With --all: also retrain effects that have a reference LoRA.")) -> None:
    """Train reference LoRAs with the Wan I2V flow-matching objective (batched over effects).

    Example: p2e train lora melt --set steps=300 -o melt_ref.safetensors
    """
    from .. import effects as fx
    from ..lora_io import read_lora
    from ..lora_jobs import train_loras
    from ..recipes import load_recipe

    overrides = set_ + ([f"base={base}"] if base else []) + ([f"preview_every={preview_every}"] if preview_every is not None else [])
    cfg = load_recipe(recipe, overrides, kind="lora")
    if resume is None:
        if all_:
            if effects:
                raise P2EError("give effect names or --all, not both")
            effects = fx.effect_names(split)
        if not effects:
            raise P2EError("no effect given", hint="name an effect (p2e effects ls), or pass --all")
        if clips is not None:
            if len(effects) != 1:
                raise P2EError("--clips ingests one effect: give exactly one effect name")
            from ..curate import add_clips
            from ..registry import open_registry

            report = add_clips(open_registry(), clips, effects[0])
            console.info(f"ingested {len(report.added)} clip(s) from {clips}; skipped {len(report.skipped)}")
    records = train_loras(list(effects or []), cfg, name=name, out=out, init=read_lora(init) if init else None,
                          resume=resume, skip_trained=all_ and not retrain)
    console.result([{"id": r.id, "effect": r.data["effect"], "val_loss": r.data["val_loss"]} for r in records],
                   lambda: console.info(f"trained {len(records)} LoRA(s)"))


@app.command("hypernet")
def hypernet(recipe: str = typer.Argument("base", help="Hypernet recipe: a file or a shipped name (base)."),
             set_: List[str] = typer.Option([], "--set", help="Override a recipe key: --set steps=500 (repeatable)."),
             base: Optional[str] = typer.Option(None, "--base", help="Base whose canonical library to learn (default: the recipe's)."),
             resume: Optional[str] = typer.Option(None, "--resume", help="Continue an interrupted run (its id).")) -> None:
    """Train the weight-driven hypernetwork on a base's canonical LoRA library (train-split effects).

    Logs the ΔW NMSE on held-out effects and unseen paraphrases as it trains, checkpoints on the run record (Ctrl-C is safe; --resume continues exactly) and registers a `hypernet` record.

    The recipe's flow phase (flow.steps, after the ΔW steps) trains on the base's own loss with the predicted LoRAs applied and also logs recovery R; init=HYPERNET starts from a trained network.

    Example: p2e train hypernet recipes/base.yaml --set steps=500
    Example: p2e train hypernet base --set init=tiny-hypernet --set steps=0 --set flow.steps=100
    """
    from ..hypernet.flow import recovery_text
    from ..hypernet.train import run_training
    from ..recipes import load_recipe

    cfg = load_recipe(recipe, set_ + ([f"base={base}"] if base else []), kind="hypernet")
    record = run_training(cfg, resume)
    if record is None:  # a non-main process under accelerate launch: the main one reports
        return
    metrics = record.data.get("metrics", {})
    console.result({"id": record.id, "name": record.name, "metrics": metrics},
                   lambda: console.info(f"hypernetwork {record.label} ({record.id}): held-out ΔW nmse "
                                        f"{metrics.get('heldout_nmse')}, unseen paraphrases {metrics.get('unseen_prompt_nmse')}"
                                        + recovery_text(metrics)))
