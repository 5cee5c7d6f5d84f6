import json
import shutil

import pytest

from p2e_cli.errors import P2EError
from p2e_cli.catalog import resolve_base
from p2e_cli.wan import (DEFAULT_TARGETS, MODULE_TYPES, REAL_WAN_SETTINGS, base_settings, check_base_dir, describe_base,
                         layer_table, layer_table_hash, load_pipeline, parameter_shapes)
from p2e_cli.wan_shapes import REAL_CONFIGS, random_w0, real_layer_table
from tests.wan_helpers import one_thread, tiny_base, tiny_pipeline  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

WAN21_I2V_14B = REAL_CONFIGS["wan21-i2v-14b"]  # Wan2.1-I2V-14B-480P-Diffusers transformer/config.json


def test_layer_table_of_a_14b_wan_is_pure_arithmetic():
    table = layer_table(WAN21_I2V_14B)
    assert len(table) == 40 * 10  # the ~400 adapted linears of a 14B Wan
    assert [l.module_type for l in table[:10]] == list(DEFAULT_TARGETS)
    assert table[0].name == "blocks.0.attn1.to_q" and table[0].shape == (5120, 5120)
    assert table[3].name == "blocks.0.attn1.to_out.0"
    assert table[8].name == "blocks.0.ffn.net.0.proj" and table[8].shape == (13824, 5120)
    assert table[9].name == "blocks.0.ffn.net.2" and table[9].shape == (5120, 13824)
    assert table[-1].block == 39
    full = layer_table(WAN21_I2V_14B, targets=MODULE_TYPES)
    assert len(full) == 480 and full[8].name == "blocks.0.attn2.add_k_proj" and full[8].shape == (5120, 5120)
    wan22 = {**WAN21_I2V_14B, "added_kv_proj_dim": None, "image_dim": None}
    assert len(layer_table(wan22, targets=MODULE_TYPES)) == 400  # no image projections to list


@pytest.mark.parametrize("family", ["wan21", "wan22"])
def test_layer_table_names_the_real_modules_with_their_shapes(family):
    import torch

    pipe = tiny_pipeline(family)
    modules = dict(pipe.transformer.named_modules())
    table = layer_table(pipe.transformer, targets=MODULE_TYPES)
    assert table == layer_table(tiny_base(family) / "transformer", targets=MODULE_TYPES)  # model == config file
    assert ("add_k" in {l.module_type for l in table}) == (family == "wan21")
    for layer in table:
        module = modules[layer.name]
        assert isinstance(module, torch.nn.Linear) and tuple(module.weight.shape) == layer.shape, layer.name
    adapted = {n for n, m in modules.items() if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")}
    assert adapted == {l.name for l in table}  # every linear of every block, nothing else


def test_layer_table_hash_identifies_shapes_and_targets():
    table = layer_table(WAN21_I2V_14B)
    assert layer_table_hash(table) == layer_table_hash(layer_table(dict(WAN21_I2V_14B)))
    assert layer_table_hash(table) != layer_table_hash(layer_table({**WAN21_I2V_14B, "ffn_dim": 8960}))
    assert layer_table_hash(table) != layer_table_hash(layer_table(WAN21_I2V_14B, targets=["self_q"]))
    with pytest.raises(P2EError, match="unknown LoRA target.*bogus"):
        layer_table(WAN21_I2V_14B, targets=["self_q", "bogus"])


def test_parameter_shapes_come_from_the_meta_device():
    shapes = parameter_shapes(WAN21_I2V_14B)  # a 14B model, no memory
    assert shapes["blocks.39.attn2.add_k_proj.weight"] == (5120, 5120)
    assert shapes["proj_out.weight"] == (64, 5120)


@pytest.mark.parametrize("shape,n_layers", [("wan21-i2v-14b", 480), ("wan21-i2v-1.3b", 360), ("wan22-i2v-a14b", 400),
                                            ("wan22-ti2v-5b", 300)])
def test_real_shapes_match_the_diffusers_model_built_on_the_meta_device(shape, n_layers):
    """Each real config's layer table (config arithmetic) names exactly the blocks' linears of the
    WanTransformer3DModel diffusers builds from it, with their shapes; no weights are allocated."""
    table = real_layer_table(shape, MODULE_TYPES)
    shapes = parameter_shapes(REAL_CONFIGS[shape])
    assert len(table) == n_layers
    assert {f"{l.name}.weight": l.shape for l in table} == {
        k: v for k, v in shapes.items() if k.startswith("blocks.") and k.endswith(".weight") and len(v) == 2}


def test_random_w0_streams_one_layer_at_a_time():
    table = real_layer_table("wan21-i2v-14b")
    stream = random_w0(table, seed=1)
    first = next(stream)
    assert first.shape == table[0].shape and first.dtype.is_floating_point and 0.8 < float(first.float().std() * 5120 ** 0.5) < 1.2
    assert next(stream).shape == table[1].shape  # made on demand: 14B parameters never exist at once
    assert bool((next(random_w0(table, seed=1)) == first).all())  # seeded: the same W0 every time


@pytest.mark.parametrize("family,experts", [("wan21", ["transformer"]), ("wan22", ["transformer", "transformer_2"])])
def test_describe_base(family, experts):
    info = describe_base(tiny_base(family))
    assert info["family"] == family and info["experts"] == experts
    assert info["text_encoder"] == "BertModel"
    assert info["n_layers"] == 20 and len(info["layer_table"]) == 16
    assert info["sizes"]["vae_scale_spatial"] == 4 and info["sizes"]["vae_scale_temporal"] == 4
    assert info["settings"]["max_sequence_length"] == 16


def test_test_pipelines_load_with_the_real_classes():
    pipe = tiny_pipeline("wan21")
    assert type(pipe).__name__ == "WanImageToVideoPipeline"
    assert type(pipe.text_encoder).__name__ == "BertModel" and type(pipe.image_encoder).__name__ == "CLIPVisionModel"
    assert pipe.vae_scale_factor_spatial == 4 and pipe.vae_scale_factor_temporal == 4
    two = tiny_pipeline("wan22")
    assert two.image_encoder is None and two.transformer_2 is not None and two.config.boundary_ratio == 0.875


def test_check_base_dir_names_what_is_missing(tmp_path):
    with pytest.raises(P2EError, match="model_index.json is missing"):
        check_base_dir(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_base("wan22"), broken)
    shutil.rmtree(broken / "vae")
    (broken / "transformer" / "config.json").unlink()
    with pytest.raises(P2EError) as e:
        check_base_dir(broken)
    assert "folder vae/ is missing" in e.value.message and "transformer/config.json is missing" in e.value.message
    with pytest.raises(P2EError, match="does not exist"):
        check_base_dir(tmp_path / "nowhere")
    blind = tmp_path / "blind"
    shutil.copytree(tiny_base("wan21"), blind)
    shutil.rmtree(blind / "image_encoder")
    with pytest.raises(P2EError, match="takes image features but the image_encoder component is missing"):
        check_base_dir(blind)


def test_base_settings(tmp_path):
    assert base_settings(tiny_base("wan22"))["frames"] == 5
    assert base_settings(tmp_path) == REAL_WAN_SETTINGS  # a real Wan without p2e_base.json: 512 tokens, 81 frames
    (tmp_path / "p2e_base.json").write_text(json.dumps({"steps": "many"}))
    with pytest.raises(P2EError, match="steps: expected int"):
        base_settings(tmp_path)


def test_resolve_base_registers_the_shipped_tiny_world_on_first_use(home):
    from p2e_cli.registry import open_registry

    tiny = resolve_base(None)
    assert tiny.name == "tiny" and tiny.data["shipped"] and (base_path_of(tiny) / "model_index.json").is_file()
    assert resolve_base("tiny").id == tiny.id and len(open_registry().ls("base")) == 1
    shutil.rmtree(base_path_of(tiny))  # a lost folder is re-assembled from the package
    assert (base_path_of(resolve_base(None)) / "transformer").is_dir()


def base_path_of(record):
    from pathlib import Path

    return Path(record.data["path"])


def test_resolve_base_without_tiny_says_so(home, monkeypatch):
    monkeypatch.setattr("p2e_cli.world.shipped.shipped_world", lambda name: None)  # an install without package data
    with pytest.raises(P2EError) as e:
        resolve_base(None)
    assert "tiny world is not installed" in e.value.message and "--base" in e.value.hint
    with pytest.raises(P2EError, match="no base record"):
        resolve_base("nope")


def test_load_pipeline_of_a_bad_folder_is_bad_input(tmp_path):
    with pytest.raises(P2EError, match="model_index.json is missing"):
        load_pipeline(tmp_path)


@pytest.mark.parametrize("residual", [False, True])
def test_fast_vae_norms_compute_the_same_vae(residual):
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    from p2e_cli.recipes import load_recipe
    from p2e_cli.world.build import make_vae

    recipe = load_recipe("world-micro", [f"vae.residual={residual}"])
    vaes = []
    for _ in range(2):
        torch.manual_seed(0)
        vaes.append(make_vae(recipe))  # make_vae gives its norms the fast forward
    fast, plain = vaes
    norms = [m for m in plain.modules() if isinstance(m, WanRMS_norm)]
    assert norms and all("forward" in vars(m) for m in norms)
    for m in norms:
        del m.forward  # back to diffusers' own F.normalize
    x = torch.rand(2, 3, recipe.frames, recipe.size, recipe.size) * 2 - 1
    recon, fast_recon = (m.decode(m.encode(x).latent_dist.mode()).sample for m in (plain, fast))
    assert torch.allclose(fast_recon, recon, atol=1e-5)
    fast_recon.square().mean().backward()
    recon.square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        assert torch.allclose(q.grad, p.grad, rtol=1e-4, atol=1e-6), name
