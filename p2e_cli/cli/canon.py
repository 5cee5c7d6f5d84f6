"""p2e canon: rewrite LoRAs in SVD-canonical form."""

from __future__ import annotations

import typer

from .pending import placeholder


def register(app: typer.Typer) -> None:
    placeholder(app, "canon", "Rewrite LoRAs in SVD-canonical form.", 'p2e canon --all', "canon, spectrum analysis and mixing (issue 8)")
