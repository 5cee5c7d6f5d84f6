"""Tiny Wan worlds for tests: real diffusers classes at 32 px, built once per test process.

`tiny_base(family)` saves a shape-faithful pipeline (wan21: CLIP image encoder + add_k/add_v;
wan22: two experts, as Wan2.2 A14B) into a temp folder the first time it is asked for; tests share
it read-only. `random_lora` makes factors with alpha != rank for any layer table.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

_ROOT = Path(tempfile.mkdtemp(prefix="p2e-wan-test-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.cache
def tiny_base(family: str) -> Path:
    from p2e_cli.wan import build_test_pipeline

    return build_test_pipeline(_ROOT / family, family, two_experts=family == "wan22")


@functools.cache
def tiny_pipeline(family: str):
    """A loaded pipeline, shared: tests that add adapters must remove them (unload_lora_weights)."""
    from p2e_cli.wan import load_pipeline

    return load_pipeline(tiny_base(family))


def picture(size: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth, colourful, non-square-friendly test picture (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 6.28, 3)
    image = np.stack([np.sin(6 * x + phase[0]), np.cos(5 * y + phase[1]), np.sin(4 * (x + y) + phase[2])], -1)
    return ((image * 0.5 + 0.5) * 255).astype(np.uint8)


def random_lora(table, rank: int = 4, seed: int = 0, std: float = 0.3):
    """A LoraFile over `table` with random A and B, alpha alternating 2 and 8 (never == rank 4),
    and one layer at a different rank, so alpha/rank handling is exercised everywhere."""
    import torch

    from p2e_cli.lora_io import LoraFile, LoraLayer

    g = torch.Generator().manual_seed(seed)
    layers = {}
    for i, layer in enumerate(table):
        r = rank + 2 if i == 1 else rank
        layers[layer.name] = LoraLayer(torch.randn(r, layer.in_features, generator=g) * std,
                                       torch.randn(layer.out_features, r, generator=g) * std, 2.0 if i % 2 else 8.0)
    return LoraFile(layers)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run ~10x faster on one torch thread on a busy 2-core box (no OpenMP spinning)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def lineage_kinds(cli, record_id: str) -> set:
    """The record kinds in `p2e show ID`'s lineage tree."""
    kinds = set()

    def walk(node):
        kinds.add(node["label"].split(":")[0])
        for parent in node["parents"]:
            walk(parent)

    walk(cli("show", record_id, "--json").json()["lineage"])
    return kinds


def accelerate_launch(home: Path, *args: str, processes: int = 2):
    """Run `p2e ARGS` under `accelerate launch` with `processes` CPU processes (gloo), on P2E_HOME=home."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
         "-m", "p2e_cli", *args],
        env={**os.environ, "P2E_HOME": str(home), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
