"""Where output goes: human text and progress on stderr, results on stdout, JSON alone on stdout.

The CLI calls `configure()` once from its global options; everything else prints through here.
"""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

from rich.console import Console

T = TypeVar("T")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline


@dataclass
class Mode:
    json: bool = False
    quiet: bool = False
    verbose: bool = False


mode = Mode()
err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def configure(*, json_output: bool = False, quiet: bool = False, verbose: bool = False) -> None:
    mode.json, mode.quiet, mode.verbose = json_output, quiet, verbose


def plain(value: Any) -> str:
    """Text from outside p2e (file names, captions, prompts, metadata), made literal for a rich
    print: markup escaped and control characters shown as \\xNN, so a file can neither break the
    output ('[/bold]' makes rich raise), style it, nor drive the terminal (escape sequences)."""
    from rich.markup import escape

    return escape(CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", str(value)))


def info(message: str) -> None:
    """A human message on stderr, printed literally (see `plain`); silent under --quiet and --json."""
    if not (mode.quiet or mode.json):
        err.print(plain(message))


def warn(message: str) -> None:
    """A warning on stderr; shown even under --json (stdout stays clean), hidden by --quiet."""
    if not mode.quiet:
        err.print(f"[yellow]warning:[/yellow] {plain(message)}")


def result(data: Any, human: Callable[[], None] | None = None) -> None:
    """Emit a command's result: JSON on stdout under --json, else the human rendering."""
    if mode.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()
    elif human is not None:
        human()
    elif not mode.quiet:
        out.print(data)


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """The one progress helper: yields `advance(n=1, **fields)`; fields (e.g. loss) show beside the bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if mode.quiet or mode.json:
        yield lambda n=1, **fields: None
        return
    if not err.is_terminal:  # a log file (nohup, CI): a plain line at most every LOG_EVERY seconds
        yield _logged_progress(description, total)
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(description, total=total, status="")

        def advance(n: int = 1, **fields: Any) -> None:
            status = _fields(fields)
            bar.update(task, advance=n, **({"status": status} if fields else {}))

        yield advance


LOG_EVERY = 30.0


def _fields(fields: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def _logged_progress(description: str, total: int | None) -> Callable[..., None]:
    """Progress for a non-terminal stderr: 'description n/total elapsed fields' lines, throttled,
    plus the final one, so a long build's log shows how far it got and how fast."""
    import time

    start = last = time.monotonic()
    done, latest = 0, {}

    def advance(n: int = 1, **fields: Any) -> None:
        nonlocal done, last
        done += n
        latest.update(fields)
        now = time.monotonic()
        if now - last >= LOG_EVERY or (total is not None and done >= total):
            last = now
            of = f"/{total}" if total is not None else ""
            err.print(plain(f"{description} {done}{of}  {now - start:.0f} s  {_fields(latest)}".rstrip()), soft_wrap=True)

    return advance


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (see `progress`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(description, total) as advance:
        for item in items:
            yield item
            advance()
