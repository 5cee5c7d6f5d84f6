"""The reliability harness: each test is one *case* run through the real CLI as subprocesses on a
fresh, seeded P2E_HOME, and ends up in one tally line:

    reliability: N cases, N clean, N tracebacks, N lost

clean     the case passed: every command gave its expected exit code, and every failure a short,
          clear `error:` line (no traceback, no "unexpected" catch-all); nothing was lost, and a
          case that interrupts nothing left no temp file or orphan artifact behind;
traceback a command printed a Python traceback or fell into the CLI's catch-all for bugs;
lost      afterwards a seeded record or an artifact is missing or corrupt (`p2e doctor`), or the
          index fails its integrity check.

Subprocesses run with OMP_NUM_THREADS=1 (tiny models on a shared box are much faster on one
thread) and a very wide COLUMNS, so an error message is one line exactly as p2e wrote it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
INJECT = Path(__file__).with_name("inject.py")
TRACEBACK = "Traceback (most recent call last)"
CATCH_ALL = "error: unexpected "  # what p2e_cli.cli.main prints for an exception that is a bug
MAX_MESSAGE = 600  # a "clear one-line message" is one line, and short


@dataclass
class Run:
    """One finished CLI command."""

    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The `error:` line p2e (or click's `Error:`) printed, without the prefix; '' if none."""
        for line in self.stderr.splitlines():
            if line.startswith(("error: ", "Error: ")):
                return line.split(": ", 1)[1]
        return ""

    @property
    def crashed(self) -> bool:
        return TRACEBACK in self.stderr or TRACEBACK in self.stdout or CATCH_ALL in self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"p2e {' '.join(self.args)[:200]} -> exit {self.code}\n{self.stderr[-3000:]}"


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "P2E_HOME": str(home), "COLUMNS": "100000", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("P2E_FAULT", None)
    env.update(extra)
    return env


def _argv(args: tuple[Any, ...], fault: str | None) -> list[Any]:
    head = [sys.executable, str(INJECT)] if fault else [sys.executable, "-m", "p2e_cli"]
    return head + [a if isinstance(a, bytes) else str(a) for a in args]


class Case:
    """One reliability case: fresh seeded home(s), CLI runs, expectations, and the lost check."""

    def __init__(self, root: Path):
        self.root = root
        self.work = root / "work"  # the commands' working directory (default outputs land here)
        self.work.mkdir()
        self.homes = 0
        self.home = self.new_home()
        self.seeded: dict[Path, dict[str, dict[str, str]]] = {}
        self.seed(self.home)
        self.runs: list[Run] = []
        self.problems: list[str] = []
        # what an interrupted p2e may leave behind, never under a real name: a kill leaves temp files
        # and orphans (an artifact stored, its record not yet), Ctrl-C only orphans
        self.litter_ok: set[str] = set()
        self.restores: list[Callable[[], None]] = []  # undone before the lost check (read-only mounts)
        self.cleanups: list[Callable[[], None]] = []  # undone after it (small file systems holding a home)

    def new_home(self) -> Path:
        """Another fresh registry folder (not created yet: p2e creates it)."""
        self.homes += 1
        return self.root / ("home" if self.homes == 1 else f"home{self.homes - 1}")

    def seed(self, home: Path) -> None:
        """Records and artifacts that must survive the case untouched (the lost check's baseline)."""
        from p2e_cli.registry import Registry

        reg = Registry(home)
        try:
            effect = reg.add("effect", name="seed-effect", data={"source": "seed"})
            reg.add("clip", data={"effect": "seed-effect", "caption": "seed clip"}, parents=[effect.id],
                    files={"frames": reg.store_bytes(b"seed frames " * 64, ".bin")})
            reg.add("lora", name="seed-lora", subkind="imported", parents=[effect.id],
                    files={"lora": reg.store_bytes(b"seed lora " * 64, ".safetensors")})
            self.seeded[home] = {r.id: {role: f.sha256 for role, f in r.files.items()} for r in reg.ls()}
        finally:
            reg.close()

    # -- running -------------------------------------------------------------------------------

    def p2e(self, *args: Any, home: Path | None = None, timeout: float = 180, fault: str | None = None,
            env: dict[str, str] | None = None) -> Run:
        """Run `p2e ARGS` in a subprocess (with `fault`, under tests/reliability/inject.py)."""
        extra = {**(env or {}), **({"P2E_FAULT": fault} if fault else {})}
        try:
            proc = subprocess.run(_argv(args, fault), env=cli_env(home or self.home, **extra), cwd=self.work,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            run = Run([_show(a) for a in args], -1, _text(e.stdout), _text(e.stderr) + f"\n[timed out after {timeout} s]")
        else:
            run = Run([_show(a) for a in args], proc.returncode, _text(proc.stdout), _text(proc.stderr))
        self.runs.append(run)
        return run

    def start(self, *args: Any, home: Path | None = None, fault: str | None = None, **popen: Any) -> subprocess.Popen:
        """Start `p2e ARGS` without waiting (for kills and concurrency); finish it with `finish`."""
        env = cli_env(home or self.home, **({"P2E_FAULT": fault} if fault else {}))
        return subprocess.Popen(_argv(args, fault), env=env, cwd=self.work, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **popen)

    def finish(self, proc: subprocess.Popen, args: Any = (), timeout: float = 180) -> Run:
        stdout, stderr = proc.communicate(timeout=timeout)
        run = Run([_show(a) for a in args], proc.returncode, _text(stdout), _text(stderr))
        self.runs.append(run)
        return run

    # -- expectations ----------------------------------------------------------------------------

    def expect(self, run: Run, code: int, *fragments: str) -> Run:
        """`run` exited `code`; for a failure, with one short `error:` line naming every fragment."""
        problems = []
        if run.crashed:
            problems.append("printed a traceback / fell into the catch-all for bugs")
        if run.code != code:
            problems.append(f"exit {run.code}, expected {code}")
        if code != 0:
            message = run.error
            if not message:
                problems.append("no `error:` line")
            elif len(message) > MAX_MESSAGE:
                problems.append(f"error line is {len(message)} characters long")
            folded = " ".join(run.stderr.split()).lower()
            problems += [f"message lacks {f!r}" for f in fragments if " ".join(f.split()).lower() not in folded]
        if problems:
            self.problems += problems
            pytest.fail(f"{'; '.join(problems)}\n{run}", pytrace=False)
        return run

    def killed(self, run: Run) -> Run:
        """`run` died of SIGKILL (what a kill case wants), printing no traceback before it."""
        self.litter_ok |= {"temp_files", "orphans"}
        problems = ["printed a traceback"] if run.crashed else []
        if run.code != -signal.SIGKILL:
            problems.append(f"exit {run.code}, expected death by SIGKILL")
        if problems:
            self.problems += problems
            pytest.fail(f"{'; '.join(problems)}\n{run}", pytrace=False)
        return run

    def register_base(self, world: Path, home: Path | None = None, name: str = "micro") -> str:
        """Register a world as a base in a seeded home (and count it in the seed baseline)."""
        from p2e_cli.registry import Registry
        from p2e_cli.wan import describe_base

        home = home or self.home
        reg = Registry(home)
        try:
            record = reg.add("base", name=name, data=describe_base(world))
            self.seeded[home][record.id] = {}
        finally:
            reg.close()
        return name

    def doctor(self, home: Path | None = None) -> dict[str, Any]:
        """`p2e doctor --json` on a home, through the CLI's entry point (in-process: no startup cost)."""
        from p2e_cli import console
        from p2e_cli.cli import main
        from p2e_cli.registry import set_home

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
            try:
                main(["--home", str(home or self.home), "--json", "doctor"])
            finally:
                set_home(None)
                console.configure()
        return json.loads(buffer.getvalue())

    def lost(self) -> list[str]:
        """What is missing or corrupt in every seeded home: doctor's findings and the seeded records."""
        from p2e_cli.registry import Registry

        found = []
        for home, records in self.seeded.items():
            try:
                report = self.doctor(home)
            except Exception as e:  # doctor itself failing is the worst kind of loss
                found.append(f"{home.name}: p2e doctor failed: {type(e).__name__}: {e}")
                continue
            for key in ("missing", "corrupt", "dangling_parents"):
                found += [f"{home.name}: {key} {item}" for item in report[key]]
            if report["integrity"] != "ok":
                found.append(f"{home.name}: index integrity {report['integrity']}")
            for key in {"temp_files", "orphans"} - self.litter_ok:
                if report[key]:
                    self.problems.append(f"{home.name}: {key} left behind: {report[key]}")
            reg = Registry(home)
            try:
                for record_id, files in records.items():
                    rows = reg.db.execute("SELECT role, sha256 FROM files WHERE record = ?", (record_id,)).fetchall()
                    if not reg.db.execute("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone():
                        found.append(f"{home.name}: seeded record {record_id} is gone")
                    elif {r[0]: r[1] for r in rows} != files:
                        found.append(f"{home.name}: seeded record {record_id} lost its files")
            finally:
                reg.close()
        return found


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _show(arg: Any) -> str:
    return arg.decode("utf-8", errors="backslashreplace") if isinstance(arg, bytes) else str(arg)


@pytest.fixture
def case(request, tmp_path) -> Case:
    """A reliability case; it is tallied, and fails if it loses data, when the test ends."""
    current = Case(tmp_path)
    yield current
    for restore in reversed(current.restores):
        restore()
    try:
        lost = current.lost()
    finally:
        for cleanup in reversed(current.cleanups):
            cleanup()
    report = getattr(request.node, "rep_call", None)
    passed = report is not None and report.passed
    # carried by the test's teardown report, so the tally also adds up across pytest-xdist workers
    request.node.user_properties.append(("reliability", {
        "clean": bool(passed and not lost and not current.problems), "lost": bool(lost),
        "traceback": any(r.crashed for r in current.runs)}))
    if lost or (passed and current.problems):
        pytest.fail("; ".join(lost + current.problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


# -- shared worlds and inputs ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def world(request) -> Path:
    """The micro Wan world (tests/conftest.py), built on one torch thread: much faster on a busy box."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return request.getfixturevalue("micro_world")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def micro(case, world) -> str:
    """The micro world registered as base `micro` in the case's home."""
    return case.register_base(world)
