"""p2e finetune: fine-tune a LoRA starting from a predicted one."""

from __future__ import annotations

import typer

from .pending import placeholder


def register(app: typer.Typer) -> None:
    placeholder(app, "finetune", "Fine-tune a LoRA starting from a predicted one.", 'p2e finetune --init melt.safetensors --clips ./melt_clips/', "finetune and eval (issue 10)")
