"""Hostile LoRA files (community downloads): never executed, never a traceback, never stored."""

import json
import os

import numpy as np
import pytest

from tests.reliability import hostile


def test_pickle_renamed_safetensors_is_refused_unexecuted(case):
    marker = case.root / "pwned"
    lora = hostile.pickle_lora(case.work / "melt.safetensors", marker)
    case.expect(case.p2e("lora", "inspect", lora), 2, "pickle", "never loads pickles")
    assert not marker.exists()


def test_torch_zip_checkpoint_is_refused_unexecuted_and_not_imported(case):
    marker = case.root / "pwned"
    lora = hostile.torch_zip_lora(case.work / "melt.safetensors", marker)
    case.expect(case.p2e("lora", "import", lora, "--name", "melt"), 2, "pickle")
    assert not marker.exists()
    assert case.p2e("ls", "lora", "--json").json()[0]["name"] == "seed-lora"  # nothing stored


def test_truncated_file(case):
    lora = hostile.truncated(hostile.good_lora(case.work / "melt.safetensors"), keep=0.6)
    case.expect(case.p2e("lora", "inspect", lora), 2, "truncated or corrupt")


def test_huge_header_length(case):
    lora = hostile.raw_safetensors(case.work / "melt.safetensors", b'{"a": 1}', length=2 ** 62)
    case.expect(case.p2e("lora", "inspect", lora), 2, "not a safetensors file")


def test_header_not_json(case):
    lora = hostile.raw_safetensors(case.work / "melt.safetensors", b"{this is not json at all}", b"\0" * 64)
    case.expect(case.p2e("lora", "inspect", lora), 2, "cannot read", "not valid JSON")


def test_header_points_past_the_end(case):
    header = json.dumps({f"{hostile.LAYER}.lora_A.weight": {"dtype": "F32", "shape": [4, 32], "data_offsets": [0, 512]}})
    lora = hostile.raw_safetensors(case.work / "melt.safetensors", header.encode(), b"\0" * 16)
    case.expect(case.p2e("lora", "inspect", lora), 2, "cannot read")


def test_nan_and_inf_values(case):
    tensors = hostile.lora_tensors()
    a, b = tensors.values()
    a[0, 0], b[1, 1] = np.nan, np.inf
    lora = hostile.safetensors_file(case.work / "melt.safetensors", tensors)
    case.expect(case.p2e("lora", "inspect", lora), 2, "NaN/Inf")


def test_a_b_shape_mismatch(case):
    tensors = hostile.lora_tensors()
    tensors[f"{hostile.LAYER}.lora_B.weight"] = tensors[f"{hostile.LAYER}.lora_B.weight"][:, :3].copy()
    lora = hostile.safetensors_file(case.work / "melt.safetensors", tensors)
    case.expect(case.p2e("lora", "inspect", lora), 2, "does not fit", "same rank")


def test_wrong_dtype(case):
    lora = hostile.safetensors_file(case.work / "melt.safetensors", hostile.lora_tensors(dtype=np.int32))
    case.expect(case.p2e("lora", "inspect", lora), 2, "non-float")


def test_keys_for_another_base(case, micro):
    tensors = {**hostile.lora_tensors(dim=999), **hostile.lora_tensors(module="transformer.blocks.7.attn1.to_k")}
    lora = hostile.safetensors_file(case.work / "other.safetensors", tensors)
    case.expect(case.p2e("lora", "import", lora, "--base", micro), 2, "does not fit base micro", "no such layer")
    assert [r["name"] for r in case.p2e("ls", "lora", "--json").json()] == ["seed-lora"]


def test_zero_byte_file(case):
    lora = case.work / "melt.safetensors"
    lora.touch()
    case.expect(case.p2e("lora", "inspect", lora), 2, "not a safetensors file")


def test_a_directory(case):
    lora = case.work / "melt.safetensors"
    lora.mkdir()
    case.expect(case.p2e("lora", "inspect", lora), 2, "is a directory")


def test_symlink_to_dev_zero(case):
    lora = case.work / "melt.safetensors"
    os.symlink("/dev/zero", lora)
    case.expect(case.p2e("lora", "import", lora), 2, "not a regular file")


@pytest.mark.parametrize("config", [
    pytest.param("[1, 2]", id="not-a-mapping"),
    pytest.param(json.dumps({"transformer.lora_alpha": "strong"}), id="alpha-not-a-number"),
    pytest.param(json.dumps({"transformer.lora_alpha": 4, "transformer.alpha_pattern": {"[": 2}}), id="bad-regex"),
])
def test_broken_adapter_metadata(case, config):
    lora = hostile.safetensors_file(case.work / "melt.safetensors", hostile.lora_tensors(),
                                    {"lora_adapter_metadata": config})
    case.expect(case.p2e("lora", "inspect", lora), 2, "lora_adapter_metadata")


def test_bias_that_does_not_fit_its_layer(case):
    tensors = {**hostile.lora_tensors(), f"{hostile.LAYER}.lora_B.bias": np.ones(5, np.float32)}
    lora = hostile.safetensors_file(case.work / "melt.safetensors", tensors)
    case.expect(case.p2e("lora", "inspect", lora), 2, "lora_B.bias")


def test_a_mix_that_overflows_is_not_written(case):
    lora = hostile.good_lora(case.work / "melt.safetensors")
    case.expect(case.p2e("lora", "mix", f"{lora}:1e300", "-o", "mix.safetensors"), 2, "NaN/Inf", "mix.safetensors")
    assert not (case.work / "mix.safetensors").exists()
