"""The README's first line on a fresh home, offline: the shipped tiny world and its shipped
hypernetwork write a LoRA for a prompt, and it renders."""

import numpy as np


def test_generate_then_render_with_the_shipped_world(cli, tmp_path):
    import imageio.v3 as iio

    photo, lora, video = tmp_path / "coffee.png", tmp_path / "melt.safetensors", tmp_path / "melt.mp4"
    assert cli("effects", "photo", "coffee", "-o", photo).code == 0
    generated = cli("generate", "melting into liquid", "-o", lora, "--json")
    assert generated.code == 0, generated.stderr
    [entry] = generated.json()
    assert entry["norm"] > 0 and entry["nearest"][0]["effect"].startswith("melt")  # nearest library effects by prompt embedding
    rendered = cli("render", photo, "--lora", lora, "-o", video, "--steps", "2")
    assert rendered.code == 0, rendered.stderr
    frames = iio.imread(video)
    assert frames.shape[0] > 1 and np.isfinite(frames).all() and frames.std() > 1
