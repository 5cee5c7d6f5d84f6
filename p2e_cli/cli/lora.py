"""p2e lora: loRA files: inspect, convert, import, mix."""

from __future__ import annotations

import typer

from .pending import placeholders

app = typer.Typer(name="lora", help="LoRA files: inspect, convert, import, mix.", no_args_is_help=True)

placeholders(app, "Wan bases, LoRA files and render (issue 4)", [
    ('inspect', "Show a LoRA file's format, rank, alpha, layers and metadata.", 'p2e lora inspect melt.safetensors'),
    ('convert', 'Convert between diffusers, wan, comfyui and musubi layouts.', 'p2e lora convert melt.safetensors --to comfyui -o melt_comfy.safetensors'),
    ('import', 'Register a LoRA file (e.g. a community effect LoRA).', 'p2e lora import melt.safetensors --effect melt'),
])
