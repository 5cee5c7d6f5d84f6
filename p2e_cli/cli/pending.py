"""Verbs whose capability is not built yet: they say so plainly and exit 1, never pretend."""

from __future__ import annotations

import typer

from ..errors import not_built

PASS_ANYTHING = {"allow_extra_args": True, "ignore_unknown_options": True}


def placeholder(app: typer.Typer, verb: str, summary: str, example: str, issue: str) -> None:
    """Register `verb` on `app` as a not-yet-built command with real help text."""

    def command(ctx: typer.Context) -> None:
        raise not_built(ctx.command_path, issue)

    command.__doc__ = f"{summary} [not built yet: {issue}]\n\nExample: {example}"
    app.command(verb, context_settings=PASS_ANYTHING)(command)


def placeholders(app: typer.Typer, issue: str, verbs: list[tuple[str, str, str]]) -> None:
    for verb, summary, example in verbs:
        placeholder(app, verb, summary, example, issue)
