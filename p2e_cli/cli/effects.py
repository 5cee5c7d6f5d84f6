"""p2e effects: the procedural effect library (exact ground truth)."""

from __future__ import annotations

import typer

from .pending import placeholders

app = typer.Typer(name="effects", help="The procedural effect library (exact ground truth).", no_args_is_help=True)

placeholders(app, "the procedural effect library and curate (issue 5)", [
    ('ls', 'List effects.', 'p2e effects ls --split heldout'),
    ('show', "Show an effect's prompts, params and a contact sheet.", 'p2e effects show melt -o melt.png'),
])
