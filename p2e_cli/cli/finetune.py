"""p2e finetune: fine-tune a LoRA starting from a predicted one."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import console
from ..errors import P2EError


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
    from ..catalog import effect_references, infer_effect, resolve_base
    from ..lora_io import read_lora
    from ..lora_jobs import lora_validation_loss, train_loras
    from ..recipes import load_recipe
    from ..registry import open_registry
    from ..render import LoraSpec, resolve_lora

    reg = open_registry()
    source = resolve_lora(LoraSpec(init, 1.0), reg,  # --init may be an effect's name: its reference on the base
                          lambda: resolve_base(base or load_recipe(recipe, set_, kind="lora").base))
    lora = source.lora
    alphas = {layer.alpha for layer in lora.layers.values()}
    if len(lora.ranks) != 1 or len(alphas) != 1:
        raise P2EError(f"--init {init} has mixed ranks or alphas ({lora.ranks}, {sorted(alphas)})",
                       hint="canonicalize it first: p2e canon FILE")
    inferred = None
    if effect is None and clips is not None:
        effect = clips.resolve().name
    elif effect is None:
        prompt = lora.p2e("prompt") or (source.record.data.get("prompt") if source.record is not None else None)
        if not prompt:
            raise P2EError(f"--init {init} records no prompt to infer its effect from",
                           hint="name the EFFECT to fine-tune on, or give --clips DIR")
        effect, why = infer_effect(reg, prompt)
        if effect is None:
            raise P2EError(f"cannot tell which effect --init {init} is: {why}",
                           hint="name the EFFECT to fine-tune on (p2e effects ls), or give --clips DIR")
        inferred = why
        console.info(f"fine-tuning on effect {effect}: {why} (name the EFFECT to choose another)")
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
    reference, target = effect_references(reg, reg.get(record.data["base"]), [effect]).get(effect), None
    if reference is not None:
        target = (reference.data.get("val_loss") or {}).get("lora")
        if target is None:  # an imported reference records no loss: measure it on the same clips
            target = lora_validation_loss(effect, read_lora(reg.path(reference.files["lora"])), cfg)
        reached = next((h["step"] for h in history if h["val"] <= target), None)
    result = {"id": record.id, "effect": effect, "effect_inferred": inferred, "val_loss": record.data["val_loss"], "history": history,
              "reference": reference.id if reference else None, "reference_loss": target, "reached_reference_at": reached}

    def show() -> None:
        console.out.print("step  validation loss")
        for h in history:
            console.out.print(f"{h['step']:5d}  {h['val']:.5f}")
        if reference is not None:
            console.out.print(f"reference LoRA {reference.name or reference.id} loss {target:.5f}: " + (f"reached at step {reached}" if reached
                                                                          else "not reached in this budget"))
        console.info(f"fine-tuned LoRA {record.id}" + (f" -> {out}" if out else ""))

    console.result(result, show)


def _registered_parents(reg, lora) -> list[str]:
    """The registry LoRAs a file names as its parents (p2e writes them), so lineage survives -o files.
    Parents this registry does not hold are named in a warning, not dropped silently."""
    import json

    try:
        named = json.loads(lora.p2e("parents") or "[]")
    except ValueError:
        return []
    found, missing = [], []
    for ref in named if isinstance(named, list) else []:
        try:
            found.append(reg.get(str(ref), "lora").id)
        except P2EError:
            missing.append(str(ref))
    if missing:
        console.warn(f"--init names parent LoRA(s) not in this registry: {', '.join(missing)}; "
                     "the fine-tune's lineage leaves them out")
    return found


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
