"""The README's opening block, verbatim, on a fresh install: generate, render, train hypernet,
finetune. Slow (the hypernetwork recipe trains for real: tens of minutes on 2 cores), so marked slow:
python -m pytest -m slow tests/lifecycle/test_readme_block.py"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


def opening_block() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = text.split("```\n", 2)[1]  # the first fenced block, under the introduction
    return [line for line in block.splitlines() if line.startswith("p2e ")]


def test_the_opening_block_is_the_design_cards():
    assert [line.split()[1] for line in opening_block()] == ["generate", "render", "train", "finetune"]


@pytest.mark.slow
def test_the_opening_block_runs_verbatim(tmp_path):
    env = {**os.environ, "P2E_HOME": str(tmp_path / "home")}

    def p2e(*args, cwd=tmp_path):
        done = subprocess.run([sys.executable, "-m", "p2e_cli", *args], cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        return done

    p2e("effects", "photo", "coffee", "-o", "img.png")
    p2e("curate", "synth", "--effects", "melt", "-n", "4")
    p2e("curate", "export", "melt", "-o", "melt_clips")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.yaml").write_bytes((README.parent / "recipes" / "base.yaml").read_bytes())
    env["P2E_HOME"] = str(tmp_path / "fresh")  # the block itself runs on a fresh install
    for line in opening_block():
        p2e(*shlex.split(line)[1:])
    assert (tmp_path / "melt.safetensors").is_file() and (tmp_path / "melt.mp4").stat().st_size > 0
