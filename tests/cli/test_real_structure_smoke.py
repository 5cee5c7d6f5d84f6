"""Real Wan block structure through the CLI: a Wan2.1-shaped (CLIP image encoder, add_k/add_v) and
a Wan2.2-shaped (two experts) random base with 40 blocks at reduced width go through
`p2e base add`, `p2e generate` and `p2e render`: no code path assumes the tiny world."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from p2e_cli.hypernet.model import HypernetConfig, Hypernetwork, layer_specs
from p2e_cli.hypernet.store import save_hypernet
from p2e_cli.lora_io import read_lora
from p2e_cli.registry import open_registry
from p2e_cli.wan import build_test_pipeline, layer_table


@pytest.mark.parametrize("family", ["wan21", "wan22"])
def test_forty_block_base_adds_generates_and_renders(cli, home, tmp_path, family):
    path = build_test_pipeline(tmp_path / family, family, blocks=40, heads=2, head_dim=8, ffn_dim=24,
                               two_experts=family == "wan22")
    added = cli("base", "add", family, "--path", path, "--json")
    assert added.code == 0, added.stderr
    assert added.json()["n_layers"] == 400 and added.json()["sizes"]["blocks"] == 40
    table = layer_table(path / "transformer")
    net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=8, fusion_layers=1, rank=2, text_dim=384), layer_specs(table))
    hypernet = save_hypernet(tmp_path / "h.safetensors", net, text_encoder="minilm",
                             layer_table=added.json()["layer_table"], target="canonical", library=[],
                             library_embeddings=torch.zeros(0, 384))
    lora = tmp_path / "melt.safetensors"
    generated = cli("generate", "melting into liquid", "--base", family, "--hypernet", hypernet, "-o", lora)
    assert generated.code == 0, generated.stderr
    assert len(read_lora(lora).layers) == 400 and open_registry().ls("lora", "predicted")
    image = tmp_path / "in.png"
    iio.imwrite(image, (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    video = tmp_path / "out.mp4"
    rendered = cli("render", image, "--base", family, "--lora", lora, "-o", video, "--steps", "2")
    assert rendered.code == 0, rendered.stderr
    assert iio.imread(video).shape[0] == 5  # the base's 5 frames
