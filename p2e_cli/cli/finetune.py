"""p2e finetune: fine-tune a LoRA starting from a predicted one."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console
from ..errors import P2EError


def finetune(effect: Optional[str] = typer.Argument(None, help="Effect to fine-tune on: a library effect or curated "
                                                                  "real effect (default: --clips' folder name)."),
             init: str = typer.Option(..., "--init", help="Starting LoRA: a .safetensors file or registry LoRA id/name "
                                                          "(e.g. from p2e generate)."),
             clips: Optional[Path] = typer.Option(None, "--clips", help="Ingest this folder of clips (video + .txt) first."),
             steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the recipe's)."),
             recipe: str = typer.Option("lora", "--recipe", help="LoRA recipe: file or shipped name."),
             set_: List[str] = typer.Option([], "--set", help="Override a recipe key (repeatable)."),
             base: Optional[str] = typer.Option(None, "--base", help="Base (default: the recipe's)."),
             out: Optional[Path] = typer.Option(None, "-o", "--out", help="Also write the fine-tuned LoRA here."),
             name: Optional[str] = typer.Option(None, "--name", help="Registry name for the result.")) -> None:
    """Fine-tune a LoRA starting from a predicted one (same trainer as p2e train lora; kind finetuned).

    The init's factors become the adapter's A/B (rank and alpha taken from it). Prints the validation loss along the way and, when the effect has a reference LoRA, the first validation step at which the fine-tune reaches the reference's loss.

    Example: p2e finetune --init melt.safetensors --clips ./melt_clips/
    """
    from ..lora_jobs import train_loras
    from ..recipes import load_recipe
    from ..registry import open_registry
    from ..render import LoraSpec, resolve_lora

    reg = open_registry()
    source = resolve_lora(LoraSpec(init, 1.0), reg)
    lora = source.lora
    alphas = {layer.alpha for layer in lora.layers.values()}
    if len(lora.ranks) != 1 or len(alphas) != 1:
        raise P2EError(f"--init {init} has mixed ranks or alphas ({lora.ranks}, {sorted(alphas)})",
                       hint="canonicalize it first: p2e canon FILE")
    if effect is None:
        if clips is None:
            raise P2EError("name the EFFECT to fine-tune on, or give --clips DIR")
        effect = clips.resolve().name
    if clips is not None:
        from ..curate import add_clips

        report = add_clips(reg, clips, effect)
        console.info(f"ingested {len(report.added)} clip(s) from {clips}; skipped {len(report.skipped)}")
    overrides = [f"rank={lora.rank}", f"alpha={alphas.pop()}", *set_]
    overrides += ([f"steps={steps}"] if steps is not None else []) + ([f"base={base}"] if base else [])
    cfg = load_recipe(recipe, overrides, kind="lora")
    parents = [source.record.id] if source.record is not None else _registered_parents(reg, lora)
    [record] = train_loras([effect], cfg, name=name, out=out, init=lora, subkind="finetuned", parents=parents)
    history = record.data["history"]
    reached = None
    reference = [r for r in reg.ls("lora", "reference") if r.data.get("effect") == effect
                 and r.data.get("base") == record.data["base"]]
    if reference:
        target = max(reference, key=lambda r: r.created).data["val_loss"]["lora"]
        reached = next((h["step"] for h in history if h["val"] <= target), None)
    result = {"id": record.id, "effect": effect, "val_loss": record.data["val_loss"], "history": history,
              "reference_loss": target if reference else None, "reached_reference_at": reached}

    def show() -> None:
        console.out.print("step  validation loss")
        for h in history:
            console.out.print(f"{h['step']:5d}  {h['val']:.5f}")
        if reference:
            console.out.print(f"reference LoRA loss {target:.5f}: " + (f"reached at step {reached}" if reached
                                                                          else "not reached in this budget"))
        console.info(f"fine-tuned LoRA {record.id}" + (f" -> {out}" if out else ""))

    console.result(result, show)


def _registered_parents(reg, lora) -> list[str]:
    """The registry LoRAs a file names as its parents (p2e writes them), so lineage survives -o files."""
    import json

    try:
        named = json.loads(lora.p2e("parents") or "[]")
    except ValueError:
        return []
    found = []
    for ref in named if isinstance(named, list) else []:
        try:
            found.append(reg.get(str(ref), "lora").id)
        except P2EError:
            continue
    return found[:1]


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
