"""Registry verbs: p2e ls, show, rm, doctor."""

from __future__ import annotations

from typing import Any, Optional

import typer

from .. import console
from ..registry import KINDS, Record, open_registry


def records_table(records: list[Record], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    effects = any(r.data.get("effect") for r in records)  # LoRAs, clips: the effect they show
    for column in ("id", "kind", "name", "subkind") + (("effect",) if effects else ()) + ("created",):
        table.add_column(column)
    for r in records:
        effect = (str(r.data.get("effect") or ""),) if effects else ()
        table.add_row(r.id, r.kind, r.name or "", r.subkind or "", *effect, r.created[:19].replace("T", " "))
    console.out.print(table)


def lineage_tree(node: dict[str, Any]):
    from rich.tree import Tree

    def label(n: dict[str, Any]) -> str:
        sub = f" ({n['subkind']})" if n.get("subkind") else ""
        return f"{n['label']}{sub} [dim]{n['id']}[/dim]"

    tree = Tree(label(node))

    def grow(branch, n):
        for parent in n["parents"]:
            grow(branch.add(label(parent)), parent)

    grow(tree, node)
    return tree


def ls(kind: Optional[str] = typer.Argument(None, help=f"Only this kind: {', '.join(KINDS)}.", show_default=False),
       subkind: Optional[str] = typer.Option(None, "--subkind", help="Only this sub-kind, e.g. reference for LoRAs.")) -> None:
    """List registry records.

    Example: p2e ls lora --subkind predicted --json
    """
    records = open_registry().ls(kind, subkind)
    console.result([r.to_json() for r in records],
                   lambda: records_table(records) if records else console.info("the registry is empty"))


def show(ref: str = typer.Argument(..., help="Record id (or prefix), name, or KIND:NAME.")) -> None:
    """Show one record with its data, files and lineage.

    Example: p2e show lora:melt
    """
    import json

    reg = open_registry()
    record = reg.get(ref)
    tree = reg.lineage(record.id)
    children = reg.children(record.id)

    def human() -> None:
        console.out.print(f"[bold]{record.label}[/bold]  id {record.id}  {record.subkind or ''}")
        console.out.print(f"created {record.created} by p2e {record.version}")
        for role, f in record.files.items():
            console.out.print(f"file {role}: {console.plain(reg.path(f))} ({f.size} bytes, sha256 {f.sha256[:12]})")
        if record.data:
            console.out.print(console.plain(json.dumps(record.data, indent=2, default=str)))
        console.out.print(lineage_tree(tree))
        if children:
            console.out.print(f"children: {', '.join(children)}")

    console.result({**record.to_json(), "lineage": tree, "children": children}, human)


def rm(ref: str = typer.Argument(..., help="Record id (or prefix), name, or KIND:NAME."),
       force: bool = typer.Option(False, "--force", help="Remove even when other records descend from it.")) -> None:
    """Remove a record; its artifact files go when nothing else references them.

    Example: p2e rm lora:melt
    """
    record = open_registry().rm(ref, force=force)
    console.result({"removed": record.id}, lambda: console.info(f"removed {record.label} ({record.id})"))


def doctor(fix: bool = typer.Option(False, "--fix", help="Remove stale temp files and orphan artifacts; rebuild indexes.")) -> None:
    """Check the registry: every artifact's hash, missing files, orphans, index integrity.

    Example: p2e doctor --fix
    """
    report = open_registry().doctor(fix=fix)

    def human() -> None:
        console.out.print(f"registry {console.plain(report['home'])} (schema v{report['schema_version']}): "
                          f"{report['records']} records, {report['files']} files, index {report['integrity']}")
        for key in ("missing", "corrupt", "orphans", "temp_files", "dangling_parents", "fixed"):
            for item in report[key]:
                console.out.print(f"  {key}: {console.plain(item)}")
        console.out.print("[green]ok[/green]" if report["ok"] else "[red]problems found[/red]")

    console.result(report, human)
    if not report["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    for command in (ls, show, rm, doctor):
        app.command(command.__name__)(command)
