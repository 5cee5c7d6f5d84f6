"""p2e base: Wan base models (local diffusers directories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .. import console
from ..registry import Record, open_registry

app = typer.Typer(name="base", help="Wan base models (local diffusers directories).", no_args_is_help=True)


def base_json(record: Record) -> dict[str, Any]:
    return {"id": record.id, "name": record.name, "created": record.created, **record.data}


def _print_base(record: Record, layers: list[Any] | None) -> None:
    d = record.data
    s = d["sizes"]
    console.out.print(f"[bold]base {record.name}[/bold]  id {record.id}  family {d['family']}")
    console.out.print(f"path {console.plain(d['path'])}")
    console.out.print(f"transformer: {s['blocks']} blocks x {s['dim']} dim, {s['heads']} heads, ffn {s['ffn_dim']}, "
                      f"text {s['text_dim']}" + (f", image {s['image_dim']}" if s.get("image_dim") else "")
                      + f"; experts: {', '.join(d['experts'])}; text encoder {d['text_encoder']}")
    console.out.print(f"vae: z_dim {s['z_dim']}, {s['vae_scale_spatial']}x spatial, {s['vae_scale_temporal']}x temporal")
    console.out.print(f"adaptable layers: {d['n_layers']}  layer table {d['layer_table']}")
    console.out.print("settings: " + ", ".join(f"{k}={v}" for k, v in d["settings"].items()))
    if layers:
        from rich.table import Table

        table = Table()
        for column in ("name", "type", "block", "out", "in"):
            table.add_column(column)
        for layer in layers:
            table.add_row(layer.name, layer.module_type, str(layer.block), str(layer.out_features), str(layer.in_features))
        console.out.print(table)


@app.command("add")
def add(name: str = typer.Argument(..., help="Name for the base, e.g. wan21."),
        path: Path = typer.Option(..., "--path", help="Local diffusers-format Wan I2V folder (with model_index.json).")) -> None:
    """Register a local diffusers Wan I2V directory (validated: model_index.json, components, transformer config).

    Example: p2e base add wan21 --path ./Wan2.1-I2V-14B-480P-Diffusers
    """
    from ..wan import describe_base
    from ..world.build import built_world, link_text_encoder

    if built_world(path) and not (path / "text_encoder").exists():
        link_text_encoder(path)  # a world built where MiniLM was not installed (p2e world build --captions)
    data = describe_base(path)
    record = open_registry().add("base", name=name, data=data)
    console.result(base_json(record), lambda: console.info(
        f"registered base {name} ({record.id}): {data['family']}, {data['n_layers']} adaptable layers, "
        f"layer table {data['layer_table']}"))


@app.command("ls")
def ls() -> None:
    """List registered bases.

    Example: p2e base ls --json
    """
    records = open_registry().ls("base")

    def human() -> None:
        if not records:
            console.info("no bases registered; add one with `p2e base add NAME --path DIR`")
            return
        from rich.table import Table

        table = Table()
        for column in ("name", "id", "family", "blocks x dim", "layers", "layer table", "path"):
            table.add_column(column)
        for r in records:
            s = r.data["sizes"]
            table.add_row(r.name or "", r.id, r.data["family"], f"{s['blocks']} x {s['dim']}", str(r.data["n_layers"]),
                          r.data["layer_table"], console.plain(r.data["path"]))
        console.out.print(table)

    console.result([base_json(r) for r in records], human)


@app.command("show")
def show(name: str = typer.Argument(..., help="Base name or id."),
         layers: bool = typer.Option(False, "--layers", help="Also list the adaptable layers (name, type, block, shape).")) -> None:
    """Show a base: path, family, sizes, adaptable layers and layer-table hash.

    Example: p2e base show tiny --json
    """
    from ..catalog import resolve_base
    from ..wan import layer_table

    record = resolve_base(name)
    table = layer_table(Path(record.data["path"]) / "transformer") if layers else None
    data = base_json(record)
    if table is not None:
        data["layers"] = [layer.to_json() for layer in table]
    console.result(data, lambda: _print_base(record, table))


@app.command("rm")
def rm(name: str = typer.Argument(..., help="Base name or id."),
       force: bool = typer.Option(False, "--force", help="Remove even when LoRAs or renders descend from it.")) -> None:
    """Unregister a base (its folder on disk is left alone).

    Example: p2e base rm wan21
    """
    reg = open_registry()
    record = reg.rm(reg.get(name, kind="base").id, force=force)
    console.result({"removed": record.id, "name": record.name},
                   lambda: console.info(f"removed base {record.name} ({record.id}); {record.data['path']} is untouched"))
