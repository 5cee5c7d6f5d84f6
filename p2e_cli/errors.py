"""The one error type of p2e.

`P2EError` is bad input (exit 2); `P2ERuntimeError` is a runtime failure (exit 1). The CLI prints
either as one red line plus an optional hint, never a traceback (unless --verbose).
"""

from __future__ import annotations


class P2EError(Exception):
    """Bad input: a missing file, a bad name, a bad recipe, an unknown registry id."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class P2ERuntimeError(P2EError):
    """Something failed while doing valid work (disk full, a killed worker, ...)."""

    exit_code = 1

