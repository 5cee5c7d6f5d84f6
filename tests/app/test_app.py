"""`p2e app` end to end on the shipped tiny world: a real server (conftest.py) driven by
gradio_client and by a real browser, headless Chromium from Debian's `chromium` package through
Playwright. In CI (CI=true) a missing Chromium fails the browser test instead of skipping it.

The browser test writes its screenshot to the test's tmp folder; `P2E_APP_SCREENSHOT=docs/app.png`
also saves it there (the README's picture), so a test run does not dirty the work tree.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest

FRAMES, STEPS = 5, 2  # small clips: these tests check plumbing, not quality


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def generate(client, prompt, image=None, seed=0):
    return client.predict(prompt, image, 1.0, seed, FRAMES, STEPS, api_name="/generate")


def frame_count(path) -> int:
    from p2e_cli.video import read_video

    frames, _ = read_video(path)
    return frames.shape[0]


def test_generate_returns_a_registered_lora_two_clips_and_the_nearest_effect(server, client, cli):
    from diffusers.loaders import WanLoraLoaderMixin

    lora_video, base_video, lora_file, summary = generate(client, "melting into liquid", seed=3)
    assert Path(lora_file).suffix == ".safetensors"
    inspect = cli("--home", server.home, "lora", "inspect", lora_file, "--json")
    assert inspect.code == 0, inspect.stderr
    info = inspect.json()
    assert info["format"] == "diffusers" and info["layers"] > 0
    assert [c["compatible"] for c in info["compatibility"] if c["base"] == "tiny"] == [True]
    state = WanLoraLoaderMixin.lora_state_dict(lora_file)
    assert state and all(k.startswith("transformer.blocks.") for k in state)
    assert Path(lora_video).suffix == Path(base_video).suffix == ".mp4"
    assert frame_count(lora_video) == frame_count(base_video) == FRAMES
    assert "nearest library effects: melt" in summary
    predicted = cli("--home", server.home, "ls", "lora", "--subkind", "predicted", "--json").json()
    ids = {r["id"]: r for r in predicted}
    record = next(ids[i] for i in ids if f"lora {i}:" in summary)
    assert record["data"]["prompt"] == "melting into liquid" and record["data"]["nearest"][0]["effect"] == "melt"

    lora_again, base_again, _, again = client.predict(record["id"], None, 1.0, 3, FRAMES, STEPS, api_name="/render")
    assert f"lora {record['id']}:" in again and frame_count(lora_again) == FRAMES
    assert Path(base_again).read_bytes() == Path(base_video).read_bytes()  # same seed, same base clip


def test_bad_inputs_get_a_message_and_the_server_stays_up(server, client, tmp_path):
    import httpx
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.png"
    text.write_text("not an image\n" * 20)
    cases = [("", None, "an empty prompt was given"),
             ("melting " * 1280, None, "is too long (at most 500)"),
             ("melt\x1b[31m red", None, "control characters"),
             ("melting into liquid", handle_file(str(text)), "not an image")]
    for prompt, image, message in cases:
        with pytest.raises(AppError, match=re.escape(message)):
            generate(client, prompt, image)
    with pytest.raises(AppError, match="no LoRA chosen"):
        client.predict("", None, 1.0, 0, FRAMES, STEPS, api_name="/render")
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(21 * 1024 * 1024)
    with open(big, "rb") as f:  # gradio refuses the upload itself, before any handler
        assert httpx.post(f"{server.url}gradio_api/upload", files={"files": ("big.png", f, "image/png")}).status_code == 413
    # a server path instead of an upload: refused, and the file is not served either
    for path in ("/etc/passwd", str(server.home / "index.sqlite")):
        request = httpx.post(f"{server.url}gradio_api/call/generate", json={"data": [
            "melting", {"path": path, "meta": {"_type": "gradio.FileData"}}, 1.0, 0, FRAMES, STEPS]})
        events = httpx.get(f"{server.url}gradio_api/call/generate/{request.json()['event_id']}").text
        assert "event: error" in events and "root:" not in events
        assert httpx.get(f"{server.url}gradio_api/file={path}").status_code == 403
    assert server.running()
    assert "nearest library effects" in generate(client, "spinning clockwise")[3]


def test_two_concurrent_generates_finish_and_the_registry_stays_clean(server, cli):
    from gradio_client import Client

    prompts = ["fading to black", "zooming in"]
    results: dict[str, object] = {}

    def one(prompt):
        try:
            results[prompt] = Client(server.url, verbose=False).predict(prompt, None, 1.0, 1, FRAMES, STEPS,
                                                                        api_name="/generate")
        except Exception as e:  # reported below
            results[prompt] = e

    threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for prompt in prompts:
        assert isinstance(results[prompt], tuple), results[prompt]
        assert frame_count(results[prompt][0]) == FRAMES
    summaries = [results[p][3] for p in prompts]
    assert summaries[0].split(":")[0] != summaries[1].split(":")[0]  # two LoRA records
    doctor = cli("--home", server.home, "doctor", "--json")
    assert doctor.code == 0 and doctor.json()["ok"], doctor.stdout
    recorded = {r["data"]["prompt"] for r in cli("--home", server.home, "ls", "lora", "--json").json()}
    assert set(prompts) <= recorded


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def download(page, button: str, folder: Path) -> Path:
    """Click a download button until it serves a file (its file arrives a moment after the videos)."""
    from playwright.sync_api import TimeoutError

    for _ in range(30):
        try:
            with page.expect_download(timeout=2_000) as event:
                page.click(button)
        except TimeoutError:
            continue
        target = folder / event.value.suggested_filename
        event.value.save_as(target)
        return target
    pytest.fail(f"{button} served no file")


def test_the_page_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    from p2e_cli.lora_io import read_lora

    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 960}, accept_downloads=True)
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith((server.url, "data:", "blob:")) else None)
            page.goto(server.url)
            page.fill("#p2e-prompt textarea", "fading to black")
            page.click("#p2e-generate")
            page.wait_for_function("""() => {
                const videos = [...document.querySelectorAll('#p2e-videos video')];
                return videos.length == 2 && videos.every(v => v.readyState >= 2 && v.videoWidth > 0);
            }""", timeout=180_000)
            summary = page.input_value("#p2e-summary textarea")
            assert "nearest library effects: fade" in summary, summary
            files = {layout: download(page, f"#p2e-download-{layout}", tmp_path) for layout in ("diffusers", "comfyui")}
            page.evaluate("""() => document.querySelectorAll('#p2e-videos video').forEach(v => {
                v.pause(); v.currentTime = 1.6; })""")  # both clips on one late frame for the picture
            page.wait_for_timeout(500)
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not outside, f"the page fetched from outside the app: {outside[:5]}"
    assert files["diffusers"].suffix == files["comfyui"].suffix == ".safetensors"
    assert read_lora(files["diffusers"]).layers.keys() == read_lora(files["comfyui"]).layers.keys()
    from safetensors import safe_open

    with safe_open(str(files["comfyui"]), framework="pt") as f:
        assert all(k.startswith("diffusion_model.") for k in f.keys())
    if os.environ.get("P2E_APP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["P2E_APP_SCREENSHOT"])
