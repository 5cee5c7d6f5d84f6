"""p2e canon, p2e analyze spectrum and p2e lora mix through the real CLI (in-process), on a tiny Wan base."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from p2e_cli.canon import is_canonical
from p2e_cli.lora_io import LoraFile, LoraLayer, read_lora, write_lora
from p2e_cli.registry import open_registry
from p2e_cli.wan import layer_table
from tests.wan_helpers import one_thread, random_lora, tiny_base  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def rel(x, y):
    return float((x.double() - y.double()).norm() / y.double().norm())


@pytest.fixture
def files(tmp_path):
    table = layer_table(tiny_base("wan22") / "transformer")
    return {"melt": write_lora(tmp_path / "melt.safetensors", random_lora(table, seed=1), prompt="melting into liquid"),
            "spin": write_lora(tmp_path / "spin.safetensors", random_lora(table, seed=2), prompt="spinning clockwise")}


@pytest.fixture
def base(cli):
    assert cli("base", "add", "t22", "--path", tiny_base("wan22")).code == 0
    return "t22"


def import_reference(cli, path, effect, base="t22"):
    result = cli("lora", "import", path, "--name", effect, "--effect", effect, "--kind", "reference", "--base", base, "--json")
    assert result.code == 0, result.stderr
    return result.json()["id"]


def test_canon_of_a_file_keeps_delta_w_and_is_bitwise_idempotent(cli, files, tmp_path):
    result = cli("canon", files["melt"], "--json")
    assert result.code == 0, result.stderr
    [entry] = result.json()
    out = tmp_path / "melt.canonical.safetensors"
    assert entry["output"] == str(out) and entry["status"] == "created" and entry["record"] is None
    source, canonical = read_lora(files["melt"]), read_lora(out)
    assert set(canonical.layers) == set(source.layers)
    for name, layer in canonical.layers.items():
        assert layer.alpha == layer.rank == source.layers[name].rank and layer.A.dtype == torch.float32
        assert rel(layer.delta(), source.layers[name].delta()) < 1e-6  # float32 storage of float64 math
        assert is_canonical(layer.B, layer.A, layer.alpha)
    assert canonical.p2e("kind") == "canonical" and canonical.p2e("prompt") == "melting into liquid"

    again = tmp_path / "again.safetensors"
    assert cli("canon", out, "-o", again).code == 0
    first, second = load_file(out), load_file(again)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_canon_all_writes_canonical_children_once(cli, base, files):
    melt = import_reference(cli, files["melt"], "melt")
    spin = import_reference(cli, files["spin"], "spin")
    result = cli("canon", "--all", "--json")
    assert result.code == 0, result.stderr
    entries = {e["source_record"]: e for e in result.json()}
    assert set(entries) == {melt, spin} and all(e["status"] == "created" for e in entries.values())
    reg = open_registry()
    child = reg.get(entries[melt]["record"])
    assert child.subkind == "canonical" and child.parents == [melt] and child.name == "melt.canonical"
    assert child.data["base"] == open_registry().get("t22", "base").id and child.data["canonical_of"] == melt and child.data["alpha"] == 4.0
    lora = read_lora(reg.path(child.files["lora"]))
    with safe_open(str(reg.path(child.files["lora"])), framework="pt") as f:
        assert f.metadata()["p2e.parents"] == f'["{melt}"]'
    assert rel(lora.layers["blocks.0.attn1.to_q"].delta(), read_lora(files["melt"]).layers["blocks.0.attn1.to_q"].delta()) < 1e-6

    assert cli("canon", "--all", "--json").json() == []  # nothing left to do
    [again] = cli("canon", "melt", "--json").json()
    assert again["status"] == "exists" and again["record"] == child.id
    [itself] = cli("canon", "melt.canonical", "--json").json()
    assert itself["status"] == "exists" and itself["record"] == child.id
    assert len(reg.ls("lora", "canonical")) == 2
    human = cli("canon", "--all")
    assert human.code == 0 and "nothing to do" in human.stderr


def test_canon_bad_input_is_exit_2(cli, files, tmp_path):
    cases = [((), "no LoRA given"), ((tmp_path / "nope.safetensors",), "neither a file nor a LoRA"),
             ((files["melt"], files["spin"], "-o", tmp_path / "x.safetensors"), "-o names one output file"),
             (("--all", files["melt"]), "not both"), ((f"{files['melt']}:0.5",), "no :SCALE"),
             ((files["melt"], "-o", files["melt"]), "refusing to overwrite")]
    for args, message in cases:
        result = cli("canon", *args)
        assert result.code == 2 and message in " ".join(result.stderr.split()), (args, result.stderr)


def test_analyze_spectrum_on_a_tiny_base_with_loras(cli, base, files, tmp_path):
    empty = cli("analyze", "spectrum", "--base", base)
    assert empty.code == 2 and "no reference LoRAs for base t22" in " ".join(empty.stderr.split())

    png = tmp_path / "gap.png"
    result = cli("analyze", "spectrum", "--base", base, "--loras", f"{files['melt']},{files['spin']}", "-o", png, "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["n_layers"] == 20 and len(report["layers"]) == 20 and len(report["loras"]) == 2
    summary = report["summary"]
    assert summary["fractions"][0] == 0.0 and summary["fractions"][-1] == 1.0
    for key in ("w0", "delta_left", "delta_right"):
        curve = summary[key]
        assert curve[0] == 0.0 and all(b >= a - 1e-9 for a, b in zip(curve, curve[1:]))
    assert summary["w0"][-1] == pytest.approx(1.0, abs=1e-5)
    square = [l for l in report["layers"] if l["shape"][0] == l["shape"][1]]
    assert square and all(l["delta_left"][-1] == pytest.approx(1.0, abs=1e-6) for l in square)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    import_reference(cli, files["melt"], "melt")
    library = cli("analyze", "spectrum", "--base", base, "--expert", "transformer_2", "--json").json()
    assert [l["source"] for l in library["loras"]] == [f"lora:{open_registry().get('melt').id}"]
    human = cli("analyze", "spectrum", "--base", base)
    assert human.code == 0 and "90% of the energy" in human.stdout


def test_analyze_spectrum_bad_input_is_exit_2(cli, base, files, tmp_path):
    wrong = write_lora(tmp_path / "wrong.safetensors",
                       LoraFile({"blocks.0.attn1.to_q": LoraLayer(torch.ones(2, 7), torch.ones(24, 2), 2.0)}))
    cases = [(("--loras", wrong), "does not fit base t22"), (("--loras", files["melt"], "-o", tmp_path / "g.jpg"), "PNG"),
             (("--loras", files["melt"], "--expert", "vae"), "unknown --expert"),
             (("--loras", files["melt"], "--device", "tpu"), "unknown --device")]
    for args, message in cases:
        result = cli("analyze", "spectrum", "--base", base, *args)
        assert result.code == 2 and message in " ".join(result.stderr.split()), (args, result.stderr)


def test_lora_mix_is_the_weighted_sum_and_written_canonical(cli, base, files, tmp_path):
    melt_id = import_reference(cli, files["melt"], "melt")
    out = tmp_path / "mix.safetensors"
    result = cli("lora", "mix", "melt:0.6", f"{files['spin']}:-0.4", "--rank", "12", "-o", out, "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["rank"] == 12 and report["kept_energy"] == pytest.approx(1.0)
    melt, spin, mixed = read_lora(files["melt"]), read_lora(files["spin"]), read_lora(out)
    for name, layer in mixed.layers.items():
        assert layer.rank == 12 and layer.alpha == 12.0
        expected = 0.6 * melt.layers[name].delta() - 0.4 * spin.layers[name].delta()
        assert rel(layer.delta(), expected) < 1e-5
        assert is_canonical(layer.B, layer.A, layer.alpha)
    assert mixed.p2e("kind") == "canonical" and mixed.p2e("parents") == f'["{melt_id}"]'
    assert mixed.p2e("prompt") == "melting into liquid, spinning clockwise"

    truncated = cli("lora", "mix", f"{files['melt']}:0.5", f"{files['spin']}:0.5", "-o", tmp_path / "t.safetensors", "--json")
    assert truncated.code == 0 and truncated.json()["rank"] == 6 and truncated.json()["kept_energy"] < 1.0
    for args, message in [((f"{files['melt']}@low", "-o", tmp_path / "x.safetensors"), "no @expert"),
                          ((f"{files['melt']}:0.5", "-o", files["melt"]), "refusing to overwrite"),
                          ((files["melt"], "-o", tmp_path / "x.safetensors", "--rank", "0"), "--rank")]:
        bad = cli("lora", "mix", *args)
        assert bad.code == 2 and message in " ".join(bad.stderr.split()), (args, bad.stderr)


def test_manifest_import_registers_reference_loras_and_reports_every_bad_line(cli, base, files, tmp_path):
    import json

    manifest = tmp_path / "teachers.jsonl"
    manifest.write_text(json.dumps({"id": "melt-x", "effect_prompt": "melting into liquid", "lora_path": "melt.safetensors"})
                        + "\n\n" + json.dumps({"id": "spin-x", "effect_prompt": "spinning clockwise",
                                               "lora_path": str(files["spin"])}) + "\n")
    result = cli("lora", "import", "--manifest", manifest, "--base", base, "--json")
    assert result.code == 0, result.stderr
    records = result.json()
    assert [(r["name"], r["subkind"], r["data"]["prompt"], r["data"]["effect"]) for r in records] == [
        ("melt-x", "reference", "melting into liquid", "melt-x"), ("spin-x", "reference", "spinning clockwise", "spin-x")]
    reg = open_registry()
    assert reg.find("effect", "melt-x").data["source"] == "real"  # lineage: lora -> effect and base
    assert {reg.get(p).kind for p in reg.find("lora", "melt-x").parents} == {"base", "effect"}
    canon = cli("canon", "--all", "--json")  # imported teachers join the canonical library
    assert canon.code == 0 and {e["source_record"] for e in canon.json()} >= {r["id"] for r in records}

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" + json.dumps({"id": "melt-x", "effect_prompt": "again", "lora_path": "melt.safetensors"})
                   + "\n" + json.dumps({"id": "ghost", "effect_prompt": "p", "lora_path": "missing.safetensors"})
                   + "\n" + json.dumps({"id": "x"}) + "\n")
    before = len(reg.ls("lora"))
    result = cli("lora", "import", "--manifest", bad)
    assert result.code == 2
    message = " ".join(result.stderr.split())  # rich wraps long lines
    for expected in ("line 1: not JSON", "line 2: a lora named 'melt-x' already exists", "line 3: no such file",
                     'line 4: needs string fields'):
        assert expected in message
    assert len(open_registry().ls("lora")) == before  # nothing half-imported
