import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from p2e_cli.errors import P2EError
from p2e_cli.lora_io import (LoraFile, LoraLayer, adapter_state_dict, convert_lora, delta_weights, fit_to_base,
                             lora_from_model, read_lora, summary, write_lora)
from p2e_cli.wan import MODULE_TYPES, layer_table, parameter_shapes
from tests.wan_helpers import one_thread, picture, random_lora, tiny_base, tiny_pipeline  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

# The original Wan names, stated independently of lora_io's own table.
WAN_NAME = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
            "attn1.to_out.0": "self_attn.o", "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
            "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o", "attn2.add_k_proj": "cross_attn.k_img",
            "attn2.add_v_proj": "cross_attn.v_img", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}


def wan_name(module: str) -> str:
    _, block, rest = module.split(".", 2)
    return f"blocks.{block}.{WAN_NAME[rest]}"


@pytest.fixture(scope="module")
def table():
    return layer_table(tiny_base("wan21") / "transformer", targets=MODULE_TYPES)  # with add_k/add_v


@pytest.fixture(scope="module")
def reference(table):
    return random_lora(table)


@pytest.fixture(scope="module")
def shapes():
    return {family: parameter_shapes(tiny_base(family) / "transformer") for family in ("wan21", "wan22")}


def expected_deltas(lora: LoraFile) -> dict[str, torch.Tensor]:
    return {name: (l.alpha / l.A.shape[0]) * (l.B @ l.A) for name, l in lora.layers.items()}


def hand_built(layout: str, lora: LoraFile, folder) -> tuple:
    """One file in `layout`, keys written out by hand as each tool ships them; returns (path, bias deltas in it)."""
    t, meta = {}, {}
    bias = torch.arange(24, dtype=torch.float32) / 10  # a bias delta on blocks.0.attn1.to_q
    first = "blocks.0.attn1.to_q"
    for name, l in lora.layers.items():
        wan = wan_name(name)
        if layout == "diffusers":
            t[f"transformer.{name}.lora_A.weight"], t[f"transformer.{name}.lora_B.weight"] = l.A, l.B
        elif layout == "peft":
            t[f"base_model.model.{name}.lora_A.weight"], t[f"base_model.model.{name}.lora_B.weight"] = l.A, l.B
        elif layout == "wan":
            t[f"diffusion_model.{wan}.lora_A.weight"], t[f"diffusion_model.{wan}.lora_B.weight"] = l.A, l.B
            t[f"diffusion_model.{wan}.alpha"] = torch.tensor(l.alpha)
        elif layout == "comfyui":
            t[f"diffusion_model.{wan}.lora_down.weight"], t[f"diffusion_model.{wan}.lora_up.weight"] = l.A, l.B
            t[f"diffusion_model.{wan}.alpha"] = torch.tensor(l.alpha)
        elif layout == "musubi":
            flat = "lora_unet_" + wan.replace(".", "_")
            t[f"{flat}.lora_down.weight"], t[f"{flat}.lora_up.weight"] = l.A, l.B
            t[f"{flat}.alpha"] = torch.tensor(l.alpha)
        elif layout == "diffsynth":  # no alpha in DiffSynth files: scale 1, so the scale lives in B
            t[f"{wan}.lora_A.default.weight"], t[f"{wan}.lora_B.default.weight"] = l.A, l.B * (l.alpha / l.A.shape[0])
    config = {"r": 4, "lora_alpha": 8.0, "alpha_pattern": {n: 2.0 for n, l in lora.layers.items() if l.alpha == 2.0},
              "target_modules": sorted(lora.layers)}
    if layout == "diffusers":
        scale = lora.layers[first].alpha / lora.layers[first].rank
        for name, l in lora.layers.items():  # diffusers needs every lora_B.bias once one exists
            t[f"transformer.{name}.lora_B.bias"] = bias / scale if name == first else torch.zeros(l.B.shape[0])
        meta["lora_adapter_metadata"] = json.dumps({f"transformer.{k}": v for k, v in config.items()})
    if layout == "peft":
        (folder / "adapter_config.json").write_text(json.dumps(config))
    if layout in ("wan", "comfyui"):
        t[f"diffusion_model.{wan_name(first)}.diff_b"] = bias
    path = folder / "adapter_model.safetensors" if layout == "peft" else folder / f"{layout}.safetensors"
    save_file({k: v.contiguous() for k, v in t.items()}, str(path), metadata=meta)
    return path, ({f"{first}.bias": bias} if layout in ("diffusers", "wan", "comfyui") else {})


@pytest.mark.parametrize("layout", ["diffusers", "peft", "wan", "comfyui", "musubi", "diffsynth"])
def test_every_layout_reads_to_the_same_delta(layout, reference, tmp_path):
    path, biases = hand_built(layout, reference, tmp_path)
    lora = read_lora(path)
    assert lora.format == layout
    want = expected_deltas(reference)
    got = delta_weights(lora)
    assert got.keys() == want.keys()  # image projections (k_img/v_img) included
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-6, atol=1e-7), name
    if layout != "diffsynth":
        assert {n: l.alpha for n, l in lora.layers.items()} == {n: l.alpha for n, l in reference.layers.items()}
    assert lora.diffs.keys() == biases.keys()
    for name, bias in biases.items():
        assert torch.allclose(lora.diffs[name], bias, atol=1e-6)


def test_full_and_norm_deltas_are_kept_not_dropped(tmp_path):
    a, b = torch.randn(2, 24), torch.randn(24, 2)
    path = tmp_path / "diff.safetensors"
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": a,
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": b,
               "diffusion_model.blocks.0.self_attn.q.diff": torch.ones(24, 24),
               "diffusion_model.blocks.1.norm3.diff": torch.ones(24),  # Wan's norm3 = diffusers' norm2
               "diffusion_model.blocks.1.cross_attn.norm_k_img.diff": torch.ones(24),
               "diffusion_model.blocks.1.modulation.diff": torch.ones(1, 6, 24),
               "diffusion_model.head.head.diff_b": torch.ones(16)}, str(path))
    lora = read_lora(path)
    assert sorted(lora.diffs) == ["blocks.0.attn1.to_q.weight", "blocks.1.attn2.norm_added_k.weight",
                                  "blocks.1.norm2.weight", "blocks.1.scale_shift_table", "proj_out.bias"]
    assert lora.layers["blocks.0.attn1.to_q"].alpha == 2.0  # no .alpha key: alpha = rank
    state, rest = adapter_state_dict(lora)
    assert "transformer.blocks.0.attn1.to_q.lora_A.weight" in state and set(rest) == set(lora.diffs)
    info = summary(lora)
    assert info["diffs"]["blocks.1.scale_shift_table"] == [1, 6, 24]
    back = tmp_path / "back.safetensors"
    convert_lora(path, "comfyui", back)
    again = read_lora(back)
    assert all(torch.equal(again.diffs[k], v) for k, v in lora.diffs.items())
    with pytest.raises(P2EError, match="cannot hold full deltas"):
        convert_lora(path, "diffusers", tmp_path / "native.safetensors")


def test_native_file_carries_diffusers_p2e_modelspec_and_kohya_metadata(reference, tmp_path):
    path = write_lora(tmp_path / "melt.safetensors", reference, kind="reference", prompt="melting into liquid",
                      base={"name": "tiny", "family": "wan21", "layer_table": "abc"}, parents=["e1"], strength=0.8)
    with safe_open(str(path), framework="pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert all(k.startswith("transformer.blocks.") and (".lora_A.weight" in k or ".lora_B.weight" in k) for k in keys)
    adapter = json.loads(meta["lora_adapter_metadata"])
    assert adapter["transformer.r"] == 4 and adapter["transformer.lora_alpha"] in (2.0, 8.0)
    assert set(adapter["transformer.target_modules"]) == set(reference.layers)
    assert meta["p2e.kind"] == "reference" and meta["p2e.base"] == "tiny" and meta["p2e.layer_table"] == "abc"
    assert meta["p2e.prompt"] == "melting into liquid" and json.loads(meta["p2e.parents"]) == ["e1"] and meta["p2e.version"]
    assert meta["modelspec.sai_model_spec"] == "1.0.0" and meta["modelspec.architecture"] == "wan2.1-i2v/lora"
    assert meta["modelspec.trigger_phrase"] == "melting into liquid" and "0.8" in meta["modelspec.usage_hint"]
    for key in ("modelspec.implementation", "modelspec.title", "modelspec.description", "modelspec.date"):
        assert meta[key], key
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] in ("2", "8") and meta["ss_base_model_version"]
    # ModelSpec's hash: sha256 of the data section after the header
    import hashlib
    import struct

    blob = path.read_bytes()
    header = struct.unpack("<Q", blob[:8])[0]
    assert meta["modelspec.hash_sha256"] == "0x" + hashlib.sha256(blob[8 + header:]).hexdigest()
    back = read_lora(path)
    assert all(torch.equal(back.layers[n].A, l.A) and back.layers[n].alpha == l.alpha for n, l in reference.layers.items())


@pytest.mark.parametrize("layout", ["wan", "comfyui", "musubi"])
def test_p2e_to_layout_to_p2e_round_trip_is_exact(layout, reference, tmp_path):
    lora = LoraFile(dict(reference.layers), {"blocks.0.attn1.to_q.bias": torch.randn(24)})
    native = write_lora(tmp_path / "a.safetensors", lora)
    other = convert_lora(native, layout, tmp_path / f"b.safetensors")
    assert read_lora(other).format == layout
    with safe_open(str(other), framework="pt") as f:
        assert "lora_adapter_metadata" not in f.metadata()  # other loaders bake .alpha: no double scaling
    final = read_lora(convert_lora(other, "diffusers", tmp_path / "c.safetensors"))
    want = delta_weights(lora)
    got = delta_weights(final)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert torch.allclose(final.diffs["blocks.0.attn1.to_q.bias"], lora.diffs["blocks.0.attn1.to_q.bias"], rtol=1e-6)


def test_files_saved_by_diffusers_and_peft_load_in_p2e(tmp_path):
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict

    targets = ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj", "ffn.net.0.proj", "ffn.net.2"]
    transformer = WanTransformer3DModel.from_pretrained(tiny_base("wan21") / "transformer")
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=6, target_modules=targets, init_lora_weights=False))
    WanImageToVideoPipeline.save_lora_weights(
        tmp_path, transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
    lora = read_lora(tmp_path / "pytorch_lora_weights.safetensors")
    assert lora.format == "diffusers" and lora.alphas == [6.0] and lora.ranks == [4] and len(lora.layers) == 24
    modules = dict(transformer.named_modules())
    for name, delta in delta_weights(lora).items():
        assert torch.allclose(delta, modules[name].get_delta_weight("default"), atol=1e-6), name
    live = lora_from_model(transformer)  # the same adapter, read from the model instead of the file
    assert all(torch.equal(live.layers[n].A, l.A) and live.layers[n].alpha == l.alpha for n, l in lora.layers.items())

    peft_dir = tmp_path / "peft"
    plain = WanTransformer3DModel.from_pretrained(tiny_base("wan21") / "transformer")
    model = get_peft_model(plain, LoraConfig(r=4, lora_alpha=3, use_rslora=True, target_modules=targets,
                                             init_lora_weights=False))
    model.save_pretrained(peft_dir)
    lora = read_lora(peft_dir / "adapter_model.safetensors")
    assert lora.format == "peft"
    modules = dict(model.base_model.model.named_modules())
    live = delta_weights(lora_from_model(model))
    for name, delta in delta_weights(lora).items():  # rsLoRA: alpha / sqrt(r), honoured
        assert torch.allclose(delta, modules[name].get_delta_weight("default"), atol=1e-6), name
        assert torch.allclose(live[name], delta, atol=1e-6), name


def run(pipe, seed: int = 0) -> np.ndarray:
    from PIL import Image

    out = pipe(image=Image.fromarray(picture(32)), prompt="melt", height=32, width=32, num_frames=5,
               num_inference_steps=2, guidance_scale=1.0, max_sequence_length=16, output_type="np",
               generator=torch.Generator().manual_seed(seed)).frames[0]
    return np.asarray(out)


def test_diffusers_load_lora_weights_accepts_p2e_files_and_honours_alpha(reference, tmp_path):
    from p2e_cli.wan import load_pipeline

    lora = LoraFile(dict(reference.layers), {"blocks.1.attn2.to_v.bias": torch.randn(24) * 0.2})
    native = write_lora(tmp_path / "fx.safetensors", lora)
    # diffusers' converter turns a partial set of .diff_b keys into meta-device biases, so the
    # cross-layout check uses the factors alone
    plain_native = write_lora(tmp_path / "plain.safetensors", reference)
    comfy = convert_lora(plain_native, "comfyui", tmp_path / "plain_comfy.safetensors")
    pipe = tiny_pipeline("wan21")
    plain = run(pipe)
    outputs = {}
    try:
        for name, path in (("native", native), ("plain_native", plain_native), ("comfy", comfy)):
            pipe.load_lora_weights(str(path), adapter_name=name, use_safetensors=True)
            outputs[name] = run(pipe)
            if name == "native":
                pipe.set_adapters(["native"], [0.0])
                assert np.array_equal(run(pipe), plain)  # strength 0 = the base
            pipe.unload_lora_weights()
    finally:
        pipe.unload_lora_weights()
    with_native = outputs["native"]
    assert np.abs(with_native - plain).max() > 0.05  # the LoRA changes the video
    assert np.abs(outputs["comfy"] - outputs["plain_native"]).max() < 1e-5  # diffusers' converter agrees on alpha
    merged = load_pipeline(tiny_base("wan21"))
    with torch.no_grad():  # the ground truth: W + (alpha/r)·B·A merged by hand
        for name, delta in expected_deltas(lora).items():
            merged.transformer.get_submodule(name).weight += delta
        merged.transformer.get_submodule("blocks.1.attn2.to_v").bias += lora.diffs["blocks.1.attn2.to_v.bias"]
    assert np.abs(run(merged) - with_native).max() < 1e-5


def test_fit_to_base(reference, shapes):
    fitted, skipped = fit_to_base(reference, shapes["wan21"])
    assert skipped == [] and fitted.layers.keys() == reference.layers.keys()
    fitted, skipped = fit_to_base(reference, shapes["wan22"])  # a Wan2.1 I2V LoRA on Wan2.2: image layers go
    assert sorted(skipped) == ["blocks.0.attn2.add_k_proj", "blocks.0.attn2.add_v_proj",
                               "blocks.1.attn2.add_k_proj", "blocks.1.attn2.add_v_proj"]
    assert len(fitted.layers) == 20
    alien = LoraFile({"blocks.7.attn1.to_q": LoraLayer(torch.zeros(2, 24), torch.zeros(24, 2), 2.0)})
    with pytest.raises(P2EError, match="blocks.7.attn1.to_q: the base has no such layer"):
        fit_to_base(alien, shapes["wan21"])
    wrong = LoraFile({"blocks.0.ffn.net.2": LoraLayer(torch.zeros(2, 24), torch.zeros(24, 2), 2.0)})
    with pytest.raises(P2EError, match=r"blocks.0.ffn.net.2: LoRA shape \(24, 24\).*\(24, 32\)"):
        fit_to_base(wrong, shapes["wan21"])


def bad_file(tmp_path, tensors, name="bad.safetensors"):
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def test_a_header_length_ending_in_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    import struct

    path = tmp_path / "lucky.safetensors"
    tensors = {"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.ones(2, 24),
               "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.ones(24, 2)}
    pad = 0
    for _ in range(2):  # pad the metadata until the header length's low byte is pickle's 0x80
        save_file(tensors, str(path), metadata={"pad": "x" * pad})
        length = struct.unpack("<Q", path.read_bytes()[:8])[0]
        pad += (0x80 - length) % 256
    assert path.read_bytes()[0] == 0x80
    assert read_lora(path).rank == 2


def test_bad_files_are_clear_errors_naming_the_key(tmp_path):
    a, b = torch.randn(4, 24), torch.randn(24, 4)
    pickle = tmp_path / "evil.safetensors"
    torch.save({"transformer.blocks.0.attn1.to_q.lora_A.weight": a}, pickle)
    with pytest.raises(P2EError, match="pickle") as e:
        read_lora(pickle)
    assert e.value.exit_code == 2
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not tensors at all")
    with pytest.raises(P2EError, match="not a safetensors file"):
        read_lora(junk)
    nan = a.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(P2EError, match=r"transformer.blocks.0.attn1.to_q.lora_A.weight: holds NaN/Inf"):
        read_lora(bad_file(tmp_path, {"transformer.blocks.0.attn1.to_q.lora_A.weight": nan,
                                      "transformer.blocks.0.attn1.to_q.lora_B.weight": b}))
    with pytest.raises(P2EError, match=r"lora_B.weight: shape \(24, 3\) does not fit"):
        read_lora(bad_file(tmp_path, {"transformer.blocks.0.attn1.to_q.lora_A.weight": a,
                                      "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.randn(24, 3)}))
    with pytest.raises(P2EError, match="lora_A.weight: has no matching lora_B"):
        read_lora(bad_file(tmp_path, {"transformer.blocks.0.attn1.to_q.lora_A.weight": a}))
    with pytest.raises(P2EError, match="transformer.blocks.0.attn1.to_q.weird: not a LoRA key"):
        read_lora(bad_file(tmp_path, {"transformer.blocks.0.attn1.to_q.weird": a}))
    with pytest.raises(P2EError, match="DoRA"):
        read_lora(bad_file(tmp_path, {"transformer.blocks.0.attn1.to_q.lora_A.weight": a,
                                      "transformer.blocks.0.attn1.to_q.lora_B.weight": b,
                                      "transformer.blocks.0.attn1.to_q.lora_magnitude_vector": torch.ones(24)}))
    with pytest.raises(P2EError, match="self_attn.zz.lora_down.weight: unknown Wan module"):
        read_lora(bad_file(tmp_path, {"diffusion_model.blocks.0.self_attn.zz.lora_down.weight": a,
                                      "diffusion_model.blocks.0.self_attn.zz.lora_up.weight": b}))
    with pytest.raises(P2EError, match="mixed or unknown"):
        read_lora(bad_file(tmp_path, {"transformer.blocks.0.attn1.to_q.lora_A.weight": a,
                                      "diffusion_model.blocks.0.self_attn.q.lora_up.weight": b}))
    with pytest.raises(P2EError, match=r"\.safetensors"):
        write_lora(tmp_path / "x.pt", {"blocks.0.attn1.to_q": LoraLayer(a, b, 4.0)})
