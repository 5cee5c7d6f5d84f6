"""p2e analyze: spectral analysis of bases and LoRAs."""

from __future__ import annotations

import typer

from .pending import placeholder

app = typer.Typer(name="analyze", help="Spectral analysis: the compressibility gap of W0 vs LoRA updates.",
                  no_args_is_help=True)

placeholder(app, "spectrum", "Energy of W0 and of ΔW in W0's top-k singular subspaces, per layer.",
            "p2e analyze spectrum --base tiny -o gap.png", "canon, spectrum analysis and mixing (issue 8)")
