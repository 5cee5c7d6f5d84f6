"""p2e base: wan base models (local diffusers directories)."""

from __future__ import annotations

import typer

from .pending import placeholders

app = typer.Typer(name="base", help="Wan base models (local diffusers directories).", no_args_is_help=True)

placeholders(app, "Wan bases, LoRA files and render (issue 4)", [
    ('add', 'Register a local diffusers Wan I2V directory.', 'p2e base add wan21 --path ./Wan2.1-I2V-14B-480P-Diffusers'),
    ('ls', 'List bases.', 'p2e base ls'),
    ('show', 'Show a base: family, sizes, adaptable layers.', 'p2e base show tiny --json'),
    ('rm', 'Unregister a base.', 'p2e base rm wan21'),
])
