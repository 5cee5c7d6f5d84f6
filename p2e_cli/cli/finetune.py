"""p2e finetune: fine-tune a LoRA starting from a predicted one."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console


def finetune(effect: Optional[str] = typer.Argument(None, help="Effect to fine-tune on: a library effect or curated "
                                                                  "real effect (default: --clips' folder name, else the "
                                                                  "effect the init's prompt names)."),
             init: str = typer.Option(..., "--init", help="Starting LoRA: a .safetensors file (e.g. from p2e "
                                                          "generate), a registry LoRA id/name, or a library effect's "
                                                          "name (its newest reference LoRA)."),
             clips: Optional[Path] = typer.Option(None, "--clips", help="Ingest this folder of clips (video + .txt) first."),
             steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the recipe's)."),
             recipe: str = typer.Option("lora", "--recipe", help="LoRA recipe: file or shipped name."),
             set_: List[str] = typer.Option([], "--set", help="Override a recipe key (repeatable)."),
             base: Optional[str] = typer.Option(None, "--base", help="Base (default: the recipe's)."),
             out: Optional[Path] = typer.Option(None, "-o", "--out", help="Also write the fine-tuned LoRA here."),
             name: Optional[str] = typer.Option(None, "--name", help="Registry name for the result.")) -> None:
    """Fine-tune a LoRA starting from a predicted one (same trainer as p2e train lora; kind finetuned).

    The init's factors become the adapter's A/B (rank and alpha taken from it). Prints the validation loss along the way and, when the effect has a reference LoRA, the first validation step at which the fine-tune reaches the reference's loss.

    Without EFFECT or --clips, the effect is inferred from the init's prompt (clips curated with that caption, or the library effect whose prompt is nearest) and named before training.

    Example: p2e finetune --init melt.safetensors
    Example: p2e finetune --init melt.safetensors --clips ./melt_clips/
    """
    from ..catalog import resolve_base
    from ..lora_jobs import finetune_lora
    from ..recipes import load_recipe
    from ..registry import open_registry
    from ..render import LoraSpec, resolve_lora

    reg = open_registry()
    source = resolve_lora(LoraSpec(init, 1.0), reg,  # --init may be an effect's name: its reference on the base
                          lambda: resolve_base(base or load_recipe(recipe, set_, kind="lora").base))
    overrides = [*set_] + ([f"steps={steps}"] if steps is not None else []) + ([f"base={base}"] if base else [])
    result = finetune_lora(reg, source, effect, clips=clips, recipe=recipe, overrides=overrides, name=name, out=out)
    history, reference, target, reached = (result["history"], result["reference"], result["reference_loss"],
                                           result["reached_reference_at"])

    def show() -> None:
        console.out.print("step  validation loss")
        for h in history:
            console.out.print(f"{h['step']:5d}  {h['val']:.5f}")
        if reference is not None:
            console.out.print(f"reference LoRA {reference} loss {target:.5f}: "
                              + (f"reached at step {reached}" if reached is not None else "not reached in this budget"))
        console.info(f"fine-tuned LoRA {result['id']}" + (f" -> {out}" if out else ""))

    console.result(result, show)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
