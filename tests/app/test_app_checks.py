"""p2e app's pieces that need no server: input checks, the command without gradio, lazy imports,
and the renderer's unload (the app's renderer lives as long as the server)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest

from p2e_cli.app import check_app_prompt, check_number, check_upload, display_frames, example_prompts
from p2e_cli.errors import P2EError
from tests.wan_helpers import one_thread  # noqa: F401


def test_prompts_are_refused_as_the_cli_refuses_them():
    assert check_app_prompt("  melting into liquid ") == "melting into liquid"
    assert check_app_prompt("é" * 500) == "é" * 500
    for text, message in [("", "empty prompt"), ("   ", "empty prompt"), ("x" * 501, "501 characters is too long"),
                          ("melt\x1b[31m", "control characters (U+001B)"), ("a\nb", "U+000A"),
                          ("caf\udce9", "not valid UTF-8"), (None, "must be text")]:
        with pytest.raises(P2EError, match=re.escape(message)):
            check_app_prompt(text)


def test_uploads_must_be_small_images_inside_the_session_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "session"
    folder.mkdir()
    good = folder / "cat.png"
    Image.new("RGB", (4096, 8), (200, 10, 10)).save(good)
    assert check_upload({"path": str(good)}, folder) == good and check_upload(None, folder) is None
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    wide, notes, big = folder / "wide.png", folder / "notes.png", folder / "big.png"
    Image.new("RGB", (4097, 8)).save(wide)
    notes.write_text("not an image")
    with open(big, "wb") as f:
        f.truncate(20 * 1024 * 1024 + 1)
    for value, message in [({"path": str(outside)}, "not named by a path on the server"),
                           ({"path": str(folder / ".." / "outside.png")}, "not named by a path on the server"),
                           ({"path": str(folder / "missing.png")}, "not named by a path on the server"),
                           ({"path": str(wide)}, "4097x8 pixels"), ({"path": str(notes)}, "not an image"),
                           ({"path": str(big)}, "up to 20 MB"), ({"url": "http://example.com/x.png"}, "uploaded file")]:
        with pytest.raises(P2EError, match=message):
            check_upload(value, folder)


def test_numbers_and_display_frames():
    assert check_number("3", "seed", 0, 10, integer=True) == 3
    for value in ("x", float("nan"), 11, 2.5):
        with pytest.raises(P2EError, match="seed must be"):
            check_number(value, "seed", 0, 10, integer=True)
    clip = np.zeros((5, 64, 48, 3), np.uint8)
    assert display_frames(clip).shape == (5, 384, 288, 3)  # the short side reaches 256, whole factor
    assert display_frames(np.zeros((2, 480, 832, 3), np.uint8)).shape == (2, 480, 832, 3)
    assert len(example_prompts()) >= 8


def test_app_without_gradio_exits_2_with_the_install_line(cli, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    result = cli("app")
    assert result.code == 2 and 'pip install "p2e[app]"' in result.stderr


def test_help_says_what_host_exposes_and_the_cli_imports_no_gradio(cli):
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", cli("app", "--help").stdout).split())
    assert "127.0.0.1" in text and "exposes the page to everyone" in text
    code = "import sys, p2e_cli.cli; print(sorted(m for m in ('torch', 'gradio') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


@pytest.mark.usefixtures("one_thread")
def test_renderer_unload_drops_the_adapter_and_restores_the_base(tmp_path):
    from p2e_cli.lora_io import write_lora
    from p2e_cli.render import Renderer, RenderParams, resolve_lora
    from p2e_cli.wan import MODULE_TYPES, layer_table
    from tests.wan_helpers import picture, random_lora, tiny_base

    table = layer_table(tiny_base("wan21") / "transformer", targets=MODULE_TYPES)
    loras = [resolve_lora(str(write_lora(tmp_path / f"{i}.safetensors", random_lora(table, seed=i)))) for i in range(3)]
    renderer = Renderer(tiny_base("wan21"))
    params = RenderParams(seed=2, steps=2)
    base = renderer.render(picture(), [], params)
    first = renderer.render(picture(), [loras[0]], params)
    renderer.render(picture(), [loras[1]], params)
    renderer.unload(loras[0])
    renderer.render(picture(), [loras[2]], params)  # a new adapter name, not the unloaded one's count
    assert np.array_equal(renderer.render(picture(), [loras[0]], params), first)
    for lora in loras:
        renderer.unload(lora)
    assert not getattr(renderer.pipe.transformer, "peft_config", {})
    assert np.array_equal(renderer.render(picture(), [], params), base)
