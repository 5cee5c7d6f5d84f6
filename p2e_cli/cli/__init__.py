"""The `p2e` command line: a thin Typer layer over the library. One module per command group.

Heavy libraries (torch, diffusers, transformers) are imported inside the commands that need them,
so `p2e --help` stays fast.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Optional

import typer

from .. import __version__, console
from ..errors import P2EError
from ..registry import set_home
from . import (analyze, base, canon, curate, effects, evaluate, finetune, generate, lora, recipe, registry_cmds, render, train,
               webapp, world)

app = typer.Typer(
    name="p2e",
    help="p2e: effect LoRAs for Wan image-to-video models, written by a weight-driven hypernetwork.\n\n"
    "Global options (--home, --json, --quiet, --verbose) may be given anywhere on the line.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"p2e {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    home: Optional[Path] = typer.Option(None, "--home", help="Registry folder (else $P2E_HOME, else the user data dir).",
                                        metavar="DIR"),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output on stdout only."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or messages, only results and errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    console.configure(json_output=json_output, quiet=quiet, verbose=verbose)
    set_home(home)


for module in (registry_cmds, generate, render, finetune, canon, webapp):
    module.register(app)
for group in (curate, train, base, lora, effects, world, evaluate, analyze, recipe):
    app.add_typer(group.app)

GLOBAL_FLAGS = {"--json", "--quiet", "-q", "--verbose", "-v"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options to the front so `p2e ls --json` works like `p2e --json ls`."""
    front, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in GLOBAL_FLAGS:
            front.append(arg)
        elif arg == "--home" and i + 1 < len(argv):
            front.extend(argv[i:i + 2])
            i += 1
        elif arg.startswith("--home="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 runtime failure, 2 bad input, 130 interrupted."""
    from ..console import plain

    try:
        from typer._click.exceptions import ClickException  # typer vendors click since 0.2x
    except ImportError:
        from click.exceptions import ClickException

    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    console.configure(verbose="--verbose" in args or "-v" in args)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="p2e", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into this exit code itself
            console.err.print("[red]interrupted[/red]")
        return code if isinstance(code, int) else 0
    except P2EError as e:
        if console.mode.verbose:
            traceback.print_exc()
        console.err.print(f"[red]error:[/red] {plain(e.message)}")
        if e.hint:
            console.err.print(f"[dim]hint: {plain(e.hint)}[/dim]")
        return e.exit_code
    except ClickException as e:
        e.show()
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        console.err.print("[red]interrupted[/red]")
        return 130
    except Exception as e:  # a bug or an unexpected runtime failure: one line unless --verbose
        if console.mode.verbose:
            traceback.print_exc()
        else:
            console.err.print(f"[red]error:[/red] unexpected {type(e).__name__}: {plain(e)}")
            console.err.print("[dim]hint: rerun with --verbose for the traceback, and report it if it is a bug[/dim]")
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
