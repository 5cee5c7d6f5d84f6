"""p2e train: reference LoRAs and the hypernetwork."""

from __future__ import annotations

import typer

from .pending import placeholder

app = typer.Typer(name="train", help="Train reference LoRAs and the hypernetwork.", no_args_is_help=True)

placeholder(app, "lora", "Train a reference LoRA for an effect (or --all for the library).",
            "p2e train lora melt --recipe lora", "train lora and the reference library (issue 7)")
placeholder(app, "hypernet", "Train the weight-driven hypernetwork on the canonical library.",
            "p2e train hypernet recipes/base.yaml", "the hypernetwork and generate (issue 9)")
