"""`p2e app` served by a real subprocess on a free local port, on a fresh home with the shipped tiny world."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One app server for a test module; stopped with SIGTERM at the end, which must remove its
    session folder."""
    pytest.importorskip("gradio", reason='p2e app needs the app extra: pip install -e ".[test,app]"')
    folder = tmp_path_factory.mktemp("app")
    home, log = folder / "home", folder / "server.log"
    port = free_port()
    env = {**os.environ, "P2E_HOME": str(home), "COLUMNS": "200"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "p2e_cli", "app", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    server = Server(url, home, process, log)
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"p2e app exited with {process.returncode}:\n{server.output()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"p2e app did not answer on {url} within 180 s:\n{server.output()}")
        time.sleep(0.5)
    yield server
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"p2e app did not stop on SIGTERM:\n{server.output()}")
    assert not list((home / "app").glob("session-*")), "the app left its session folder behind"
