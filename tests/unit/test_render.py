import numpy as np
import pytest
import torch

from p2e_cli.errors import P2EError
from p2e_cli.lora_io import LoraFile, write_lora
from p2e_cli.render import LoraSpec, Renderer, RenderParams, parse_lora_spec, prepare_image, render, resolve_lora
from p2e_cli.wan import MODULE_TYPES, layer_table
from tests.wan_helpers import one_thread, picture, random_lora, tiny_base  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def renderers():
    return {family: Renderer(tiny_base(family)) for family in ("wan21", "wan22")}


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    table = layer_table(tiny_base("wan21") / "transformer", targets=MODULE_TYPES)
    effect = random_lora(table, seed=1)
    with_norm = LoraFile(dict(random_lora(table, seed=2).layers),
                         {"blocks.0.norm2.weight": torch.full((24,), 0.5), "blocks.1.attn1.to_q.weight": torch.ones(24, 24)})
    return {"effect": write_lora(folder / "effect.safetensors", effect, prompt="melting into liquid"),
            "other": write_lora(folder / "other.safetensors", random_lora(table, seed=3)),
            "norm": write_lora(folder / "norm.safetensors", with_norm, fmt="comfyui")}


def test_parse_lora_spec():
    assert parse_lora_spec("melt.safetensors") == LoraSpec("melt.safetensors", 1.0, "both")
    assert parse_lora_spec("melt.safetensors:0.8") == LoraSpec("melt.safetensors", 0.8, "both")
    assert parse_lora_spec("lora:melt") == LoraSpec("lora:melt", 1.0, "both")  # KIND:NAME keeps its colon
    assert parse_lora_spec("lora:melt:-0.5@low") == LoraSpec("lora:melt", -0.5, "low")
    assert parse_lora_spec("C:\\loras\\x.safetensors") == LoraSpec("C:\\loras\\x.safetensors", 1.0, "both")
    with pytest.raises(P2EError):
        parse_lora_spec("@low")


def test_prepare_image_centre_crops_to_the_aspect():
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255  # a white centre third
    out = np.asarray(prepare_image(wide, (32, 32)))
    assert out.shape == (32, 32, 3) and out.min() > 200  # only the centre survives a square crop


def test_same_seed_same_frames_and_loras_change_them(renderers, lora_files):
    r = renderers["wan21"]
    effect = resolve_lora(str(lora_files["effect"]))
    weight = r.pipe.transformer.blocks[0].attn1.to_q.weight.detach().clone()
    base = r.render(picture(), [], RenderParams(seed=3))
    assert base.shape == (5, 32, 32, 3) and base.dtype == np.uint8
    assert np.array_equal(r.render(picture(), [], RenderParams(seed=3)), base)
    assert not np.array_equal(r.render(picture(), [], RenderParams(seed=4)), base)
    styled = r.render(picture(), [effect], RenderParams(seed=3))
    assert np.abs(styled.astype(int) - base).max() > 20
    assert np.array_equal(r.render(picture(), [effect], RenderParams(seed=3)), styled)
    off = resolve_lora(f"{lora_files['effect']}:0")
    assert np.array_equal(r.render(picture(), [off], RenderParams(seed=3)), base)  # scale 0 = no LoRA
    half = r.render(picture(), [resolve_lora(f"{lora_files['effect']}:0.5")], RenderParams(seed=3))
    assert not np.array_equal(half, styled) and not np.array_equal(half, base)
    assert np.array_equal(r.render(picture(), [], RenderParams(seed=3)), base)  # adapters switch off cleanly
    assert "p2e_0" in r.pipe.transformer.peft_config  # applied as a peft adapter ...
    assert torch.equal(r.pipe.transformer.blocks[0].attn1.to_q.base_layer.weight, weight)  # ... never merged


def test_two_loras_stack(renderers, lora_files):
    r = renderers["wan21"]
    a, b = resolve_lora(str(lora_files["effect"])), resolve_lora(str(lora_files["other"]))
    one = r.render(picture(), [a])
    both = r.render(picture(), [a, b])
    assert not np.array_equal(one, both)
    assert np.array_equal(r.render(picture(), [b, a]), both)


def test_full_deltas_are_applied_for_one_render_and_restored(renderers, lora_files):
    r = renderers["wan21"]
    norm = resolve_lora(str(lora_files["norm"]))
    assert norm.lora.format == "comfyui" and "blocks.0.norm2.weight" in norm.lora.diffs
    before = r.render(picture(), [])
    assert not np.array_equal(r.render(picture(), [norm]), before)
    assert np.array_equal(r.render(picture(), []), before)


def test_wan22_experts_and_a_wan21_lora_on_it(renderers, lora_files, capsys):
    r = renderers["wan22"]
    path = lora_files["effect"]
    base = r.render(picture(), [])
    both = r.render(picture(), [resolve_lora(str(path))])
    assert "skipped 4 layer(s)" in " ".join(capsys.readouterr().err.split())  # Wan2.1 image projections, named
    high = r.render(picture(), [resolve_lora(f"{path}@high")])
    low = r.render(picture(), [resolve_lora(f"{path}@low")])
    for a, b in ((base, both), (base, high), (base, low), (high, low), (both, high)):
        assert not np.array_equal(a, b)
    with pytest.raises(P2EError, match="no low-noise expert"):
        renderers["wan21"].render(picture(), [resolve_lora(f"{path}@low")])


def test_bad_parameters_are_clear_errors(renderers):
    r = renderers["wan22"]
    with pytest.raises(P2EError, match="--frames 6 is not 4k\\+1"):
        r.resolve_params(RenderParams(frames=6))
    with pytest.raises(P2EError, match="multiples of 16"):
        r.resolve_params(RenderParams(size=(30, 32)))
    with pytest.raises(P2EError, match="beyond what this base renders: at most 128x128"):
        r.resolve_params(RenderParams(size=(20000, 20000)))
    assert r.resolve_params(RenderParams(size=(128, 128))).size == (128, 128)
    with pytest.raises(P2EError, match="--steps"):
        r.resolve_params(RenderParams(steps=0))
    assert r.resolve_params(RenderParams()).size == (32, 32)  # defaults from p2e_base.json


def test_render_function(lora_files):
    frames = render(tiny_base("wan22"), picture(), [(lora_files["effect"], 1.0)], prompt="melt", frames=9, size=(48, 32))
    assert frames.shape == (9, 32, 48, 3)


def test_sheet_labels_name_registry_loras_by_name_else_effect_and_id(tmp_path):
    from p2e_cli.registry import Record
    from p2e_cli.render import ResolvedLora

    path = tmp_path / ("ab" * 32 + ".safetensors")  # registry artifacts are named by content hash
    record = Record("f00d", "lora", None, "predicted", "", "", {"effect": "melt"})
    lora = ResolvedLora(LoraSpec("f00d", 0.8), path, "ab" * 32, None, record)
    assert lora.label == "melt f00d:0.8"
    record.name = "my-melt"
    assert lora.label == "my-melt:0.8"
    assert ResolvedLora(LoraSpec(str(path), 1.0), tmp_path / "melt.safetensors", "", None).label == "melt:1"


def test_a_lora_acts_in_render_as_its_delta_w_defines(renderers, lora_files):
    """Every layer of a LoRA file, loaded through diffusers' load_lora_weights at scale s, computes
    x (W + s·(alpha/r)·B·A)^T + b: the ΔW its trainer wrote (mixed ranks and alphas included). A wrong
    key mapping or alpha/rank scaling would render something else than the LoRA that was trained."""
    r = renderers["wan21"]
    spec = resolve_lora(f"{lora_files['other']}:0.5")
    name, _ = r._adapter(spec, "transformer")
    model = r.pipe.transformer
    model.enable_lora()
    model.set_adapters([name], [0.5])
    g = torch.Generator().manual_seed(0)
    try:
        for key, layer in spec.lora.layers.items():
            module = model.get_submodule(key)
            weight, bias = module.base_layer.weight, module.base_layer.bias
            x = torch.randn(3, weight.shape[1], generator=g)
            delta = 0.5 * layer.alpha / layer.A.shape[0] * (layer.B.float() @ layer.A.float())
            with torch.no_grad():
                torch.testing.assert_close(module(x), torch.nn.functional.linear(x, weight + delta, bias), rtol=1e-4, atol=1e-5)
                assert (module(x) - torch.nn.functional.linear(x, weight, bias)).abs().max() > 1e-3  # the LoRA is on
    finally:
        model.disable_lora()
