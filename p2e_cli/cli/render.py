"""p2e render: render a Wan image-to-video clip, optionally with LoRAs."""

from __future__ import annotations

import typer

from .pending import placeholder


def register(app: typer.Typer) -> None:
    placeholder(app, "render", "Render a Wan image-to-video clip, optionally with LoRAs.", 'p2e render img.png --lora melt.safetensors -o melt.mp4', "Wan bases, LoRA files and render (issue 4)")
