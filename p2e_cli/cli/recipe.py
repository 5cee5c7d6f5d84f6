"""p2e recipe: list, show, validate and copy YAML recipes."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from .. import console
from ..errors import P2EError
from ..files import atomic_write, check_output_path
from ..recipes import load_recipe, read_yaml, recipe_path, shipped_recipes, to_dict

app = typer.Typer(name="recipe", help="List, show, validate and copy YAML recipes.", no_args_is_help=True)


@app.command("ls")
def ls() -> None:
    """List the recipes shipped with p2e.

    Example: p2e recipe ls
    """
    rows = []
    for name, path in sorted(shipped_recipes().items()):
        raw = read_yaml(path)
        rows.append({"name": name, "kind": raw.get("kind") if isinstance(raw, dict) else None, "path": str(path)})

    def human() -> None:
        for row in rows:
            console.out.print(f"{row['name']:<20} {row['kind'] or '?':<10} {console.plain(row['path'])}")

    console.result(rows, human)


@app.command("show")
def show(name: str = typer.Argument(..., help="Shipped recipe name or a recipe file."),
         set_: List[str] = typer.Option([], "--set", help="Override a key: --set optim.lr=1e-4 (repeatable).")) -> None:
    """Print a recipe resolved: validated, with every default filled in.

    Example: p2e recipe show lora --set rank=16
    """
    import yaml

    config = to_dict(load_recipe(name, set_))
    console.result(config, lambda: console.out.print(console.plain(yaml.safe_dump(config, sort_keys=False).rstrip())))


@app.command("validate")
def validate(file: Path = typer.Argument(..., help="Recipe file to check."),
             set_: List[str] = typer.Option([], "--set", help="Override a key before checking (repeatable).")) -> None:
    """Check a recipe; report every problem by its key path (exit 2 if any).

    Example: p2e recipe validate my-lora.yaml
    """
    config = load_recipe(file, set_)
    console.result({"valid": True, "kind": config.kind, "path": str(file)},
                   lambda: console.out.print(f"{console.plain(file)}: valid {config.kind} recipe"))


@app.command("cp")
def cp(name: str = typer.Argument(..., help="Shipped recipe name."),
       dest: Path = typer.Argument(..., help="Destination file or folder."),
       force: bool = typer.Option(False, "--force", help="Overwrite an existing file.")) -> None:
    """Copy a shipped recipe to edit it.

    Example: p2e recipe cp lora my-lora.yaml
    """
    source = recipe_path(name)
    target = dest / source.name if dest.is_dir() else check_output_path(dest)
    if target.exists() and not force:
        raise P2EError(f"{target} already exists", hint="pass --force to overwrite it")
    with atomic_write(target) as tmp:
        tmp.write_bytes(source.read_bytes())
    console.result({"copied": str(source), "to": str(target)}, lambda: console.info(f"wrote {target}"))
