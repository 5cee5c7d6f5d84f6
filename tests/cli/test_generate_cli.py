"""p2e generate's bad inputs: each exits 2 with a message naming the problem (in-process CLI)."""

import pytest
import torch

from p2e_cli.hypernet.model import HypernetConfig, Hypernetwork, layer_specs
from p2e_cli.hypernet.store import Generator, save_hypernet
from p2e_cli.lora_io import LoraLayer, write_lora
from p2e_cli.wan import base_config, layer_table


@pytest.fixture
def hypernet(micro_base, tmp_path):
    table = layer_table(base_config(micro_base))
    net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=4, fusion_layers=1, rank=2, text_dim=384),
                       layer_specs(table))
    return save_hypernet(tmp_path / "h.safetensors", net, text_encoder="minilm", layer_table=micro_base.data["layer_table"],
                         target="canonical", library=[], library_embeddings=torch.zeros(0, 384))


def test_generate_bad_inputs(cli, micro_base, hypernet, tmp_path):
    lora = write_lora(tmp_path / "l.safetensors", {"blocks.0.attn1.to_q": LoraLayer(torch.zeros(2, 16), torch.zeros(32, 2), 2.0)})
    cases = {
        "no hypernetwork for base micro": ("x",),
        "an empty prompt": ("  ",),
        "no prompt given": (),
        "-o names one file but 2 prompts": ("a", "b", "-o", tmp_path / "a.safetensors", "--hypernet", hypernet),
        "--scale must be a finite number": ("a", "--scale", "nan", "--hypernet", hypernet),
        "does not exist": ("--batch", tmp_path / "missing.txt"),
        "--rank 3 is outside 1..2": ("a", "--rank", "3", "--hypernet", hypernet),
        "not a p2e hypernetwork": ("a", "--hypernet", lora),
        "give -o FILE or --out-dir DIR, not both": ("a", "-o", tmp_path / "x.safetensors", "--out-dir", tmp_path),
        "LoRA files are .safetensors": ("a", "-o", tmp_path / "x.txt", "--hypernet", hypernet),
        "precision 'fp16' is not one of auto, fp32, bf16": ("a", "--hypernet", hypernet, "--precision", "fp16"),
    }
    old = tmp_path / "old.safetensors"  # a hypernetwork written by an earlier p2e
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(str(hypernet), framework="pt") as f:
        meta = f.metadata()
    save_file(load_file(str(hypernet)), str(old), metadata={"p2e.hypernet": meta["p2e.hypernet"].replace('"format": 2', '"format": 1')})
    cases["holds a format-1 hypernetwork; this p2e reads format 2"] = ("a", "--hypernet", old)
    for expected, args in cases.items():
        result = cli("generate", *args, "--base", "micro")
        message = " ".join(result.stderr.split())
        assert result.code == 2 and expected in message and "Traceback" not in result.stderr, (expected, result.stderr)
    ok = cli("generate", "melting", "--base", "micro", "--hypernet", hypernet, "--precision", "fp32", "--json")
    assert ok.code == 0 and ok.json()[0]["nearest"] == []  # a hypernet without a library has no neighbours
    assert ok.json()[0]["precision"] == "float32"


def test_bf16_generator_stays_near_fp32(micro_base, hypernet):
    """precision bf16 (what auto picks on a CPU with bf16 in hardware) writes float32 factors whose
    ΔW is within a few percent of the fp32 computation's."""
    from p2e_cli.hypernet.store import load_hypernet

    net, meta, _ = load_hypernet(hypernet)
    torch.manual_seed(0)
    torch.nn.init.normal_(net.predictors[0].mixing[-1].weight, std=0.05)  # the head starts at zero: make ΔW nonzero
    save_hypernet(hypernet, net, text_encoder="minilm", layer_table=meta["layer_table"], target="canonical",
                  library=[], library_embeddings=torch.zeros(0, 384))
    prompts = ["melting into liquid", "spinning clockwise"]
    exact = Generator(hypernet, micro_base, precision="fp32")(prompts)
    fast = Generator(hypernet, micro_base, precision="bf16")(prompts)
    for one, other in zip(exact, fast):
        dw = {k: b @ a for k, (b, a) in one.items()}
        assert all(b.dtype == a.dtype == torch.float32 for b, a in other.values())
        err = sum(float((dw[k] - b @ a).square().sum()) for k, (b, a) in other.items())
        norm = sum(float(d.square().sum()) for d in dw.values())
        assert norm > 0 and 0 < (err / norm) ** 0.5 < 0.03
