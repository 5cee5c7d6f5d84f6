"""Shared fixtures: a fresh registry home per test, and the real CLI in-process or as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from p2e_cli import console
from p2e_cli.registry import set_home

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: the workers share the cores, one torch thread each
    import torch

    torch.set_num_threads(1)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("P2E_HOME", str(path))
    set_home(None)
    yield path
    set_home(None)
    console.configure()


@pytest.fixture
def cli(home, capsys):
    """Run the CLI in-process (fast): cli("ls", "--json") -> Result."""
    from p2e_cli.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        set_home(None)
        console.configure()
        return Result(code, captured.out, captured.err)

    return run


def p2e_subprocess(*args: str, home: Path, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "P2E_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "p2e_cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


@pytest.fixture
def p2e(home):
    """Run the real CLI as a subprocess: p2e("ls", "--json") -> CompletedProcess."""
    return lambda *args, **kw: p2e_subprocess(*args, home=home, **kw)


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory) -> Path:
    """A micro Wan world (same code as the tiny one), barely trained: enough for code paths that
    need a real, trainable base. Built once per test session in a few seconds."""
    from p2e_cli.recipes import load_recipe
    from p2e_cli.world.build import build_world

    recipe = load_recipe("world-micro", ["vae.steps=3", "transformer.steps=3", "transformer.corpus_clips=8"])
    return build_world(recipe, tmp_path_factory.mktemp("world") / "micro")


@pytest.fixture
def micro_base(home, micro_world):
    """The micro world registered as base `micro` in this test's fresh home."""
    from p2e_cli.registry import open_registry
    from p2e_cli.wan import describe_base

    return open_registry().add("base", name="micro", data=describe_base(micro_world))


def pytest_terminal_summary(terminalreporter):
    """The reliability tally (tests/reliability: each case's outcome rides on its teardown report's
    user_properties), summed here in the root conftest so it also adds up on pytest-xdist's
    controller, which loads no sub-folder conftest."""
    outcomes = [value for reports in terminalreporter.stats.values() for report in reports
                if getattr(report, "when", None) == "teardown"
                for key, value in report.user_properties if key == "reliability"]
    if outcomes:
        terminalreporter.write_sep("-", "reliability")
        terminalreporter.write_line(
            f"reliability: {len(outcomes)} cases, {sum(o['clean'] for o in outcomes)} clean, "
            f"{sum(o['traceback'] for o in outcomes)} tracebacks, {sum(o['lost'] for o in outcomes)} lost")
