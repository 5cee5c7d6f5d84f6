"""`p2e app` served by a real subprocess on a free local port, on a fresh home with the shipped tiny world.

One server for the whole test session, shared by the pytest-xdist workers: the first worker that
needs it starts it, each worker counts itself in and out, and the last one out stops it (SIGTERM,
which must remove the app's session folder). xdist's `--dist loadgroup` would be the plain way to
keep these tests on one worker, but with pytest 9.2 it silently stops grouping
(pytest-dev/pytest-xdist#1386), and module-scoped fixtures then start a server on each worker.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

START_SECONDS = 180


@dataclass
class Server:
    url: str
    home: Path
    pid: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        """Alive and not a zombie (the worker that started it may not have reaped it yet)."""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def locked(path: Path):
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def start(folder: Path) -> Server:
    home, log = folder / "home", folder / f"server-{time.time_ns()}.log"
    port = free_port()
    env = {**os.environ, "P2E_HOME": str(home), "COLUMNS": "200"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "p2e_cli", "app", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}/", home, process.pid, log)
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"p2e app exited with {process.returncode}:\n{server.output()}")
        try:
            with urllib.request.urlopen(server.url, timeout=5) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"p2e app did not answer on {server.url} within {START_SECONDS} s:\n{server.output()}")
        time.sleep(0.5)


def stop(server: Server) -> None:
    os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while server.running():
        if time.monotonic() > deadline:
            os.kill(server.pid, signal.SIGKILL)
            pytest.fail(f"p2e app did not stop on SIGTERM:\n{server.output()}")
        time.sleep(0.2)
    assert not list((server.home / "app").glob("session-*")), "the app left its session folder behind"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    pytest.importorskip("gradio", reason='p2e app needs the app extra: pip install -e ".[test,app]"')
    base = tmp_path_factory.getbasetemp()
    folder = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = folder / "p2e-app"
    folder.mkdir(exist_ok=True)
    state = folder / "server.json"
    with locked(folder / "server.lock"):
        shared = json.loads(state.read_text()) if state.exists() else {"users": 0}
        server = Server(**{k: (Path(v) if k in ("home", "log") else v) for k, v in shared["server"].items()}) \
            if shared["users"] else None
        if server is not None and not server.running():
            pytest.fail(f"the shared p2e app died:\n{server.output()}")
        if server is None:
            server = start(folder)
            shared["server"] = {"url": server.url, "home": str(server.home), "pid": server.pid, "log": str(server.log)}
        shared["users"] += 1
        state.write_text(json.dumps(shared))
    yield server
    with locked(folder / "server.lock"):
        shared = json.loads(state.read_text())
        shared["users"] -= 1
        state.write_text(json.dumps(shared))
        if not shared["users"]:
            stop(server)
