"""p2e eval: measure a hypernetwork against the reference library and the ground truth."""

from __future__ import annotations

import typer

from .pending import placeholder

ISSUE = "finetune and eval (issue 10)"

app = typer.Typer(name="eval", help="Evaluate a hypernetwork: recovery, NMSE, render alignment, controls.",
                  no_args_is_help=True)

placeholder(app, "run", "Evaluate a hypernetwork on a split and write report.json and results.md.",
            "p2e eval run --split heldout -o eval/", ISSUE)
placeholder(app, "ablations", "Train every ablation variant and tabulate held-out NMSE and recovery.",
            "p2e eval ablations --recipe ablations", ISSUE)
