"""p2e generate: write a LoRA from an effect prompt in one forward pass of the hypernetwork."""

from __future__ import annotations

import typer

from .pending import placeholder


def register(app: typer.Typer) -> None:
    placeholder(app, "generate", "Write a LoRA from an effect prompt in one forward pass of the hypernetwork.", 'p2e generate "melting into liquid" -o melt.safetensors', "the hypernetwork and generate (issue 9)")
