"""p2e world: the embedded tiny Wan world: build and evaluate."""

from __future__ import annotations

import typer

from .pending import placeholders

app = typer.Typer(name="world", help="The embedded tiny Wan world: build and evaluate.", no_args_is_help=True)

placeholders(app, "the embedded tiny world (issue 6)", [
    ('build', 'Train a small Wan world from a recipe.', 'p2e world build recipes/world-tiny.yaml'),
    ('eval', "Print a world's quality figures.", 'p2e world eval tiny'),
])
