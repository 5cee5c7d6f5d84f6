"""Typed LoRA records: every writer stores its base by id, and registry migration 2 mends the
registries that `p2e lora import` wrote with the base's name."""

import shutil
from pathlib import Path

import pytest

from p2e_cli.records import LoraData, is_on
from p2e_cli.registry import open_registry
from tests.wan_helpers import one_thread, random_lora, tiny_base  # noqa: F401

# made with p2e at e26cd88 through the real CLI (base add t22; lora import --base t22 of a reference
# `melt-ref` for effect melt, a manifest teacher `spin-x`, and `loose` with no base): its two
# base-linked LoRAs record {"base": "t22"}, the base's name
OLD_REGISTRY = Path(__file__).parents[1] / "data" / "registry-v1-import-base-names.sqlite"
BASE_ID = "3767dff0fc83"


def test_migration_2_turns_imported_base_names_into_ids(home):
    import sqlite3

    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(OLD_REGISTRY, home / "index.sqlite")
    before = dict(sqlite3.connect(home / "index.sqlite").execute(
        "SELECT name, json_extract(data, '$.base') FROM records WHERE kind = 'lora'").fetchall())
    assert before == {"melt-ref": "t22", "spin-x": "t22", "loose": None}  # the fixture shows the old bug

    reg = open_registry()
    assert reg.schema_version >= 2
    base = reg.get("t22", "base")
    assert base.id == BASE_ID
    loras = {r.name: r for r in reg.ls("lora")}
    assert loras["melt-ref"].data["base"] == BASE_ID and loras["spin-x"].data["base"] == BASE_ID
    assert loras["loose"].data.get("base") is None and loras["melt-ref"].data["prompt"] == "melting into liquid"
    # what the migration is for: `train lora --all` skips these references, `finetune` and the
    # hypernetwork's library find them on their base
    assert {r.data["effect"] for r in reg.ls("lora", "reference") if is_on(r, base)} == {"melt", "spin-x"}
    from p2e_cli.catalog import effect_references

    assert {e: r.name for e, r in effect_references(reg, base).items()} == {"melt": "melt-ref", "spin-x": "spin-x"}
    open_registry()  # reopening runs nothing twice
    assert open_registry().get("melt-ref", "lora").data == loras["melt-ref"].data


@pytest.mark.usefixtures("one_thread")
def test_imported_and_canonical_loras_record_their_base_by_id(cli, tmp_path):
    from p2e_cli.lora_io import write_lora
    from p2e_cli.wan import layer_table

    path = write_lora(tmp_path / "melt.safetensors", random_lora(layer_table(tiny_base("wan22") / "transformer"), seed=1),
                      prompt="melting into liquid")
    assert cli("base", "add", "t22", "--path", tiny_base("wan22")).code == 0
    result = cli("lora", "import", path, "--name", "melt-ref", "--effect", "melt", "--kind", "reference", "--base", "t22",
                 "--json")
    assert result.code == 0, result.stderr
    reg = open_registry()
    base = reg.get("t22", "base")
    record = reg.get(result.json()["id"])
    assert record.data["base"] == base.id and base.id in record.parents
    assert record.data["layer_table"] == base.data["layer_table"]
    assert cli("canon", "--all").code == 0
    [canonical] = reg.ls("lora", "canonical")
    assert canonical.data["base"] == base.id and canonical.data["canonical_of"] == record.id
    assert LoraData.of(canonical).to_dict() == canonical.data  # the typed view loses nothing


LORA = ["steps=2", "batch_size=2", "clips_per_effect=3", "val_clips=1", "validate_every=2", "checkpoint_every=2"]


@pytest.mark.usefixtures("one_thread")
def test_a_manifest_reference_is_skipped_by_train_all_and_measured_by_finetune(cli, micro_base, tmp_path):
    """The teacher imported by manifest as `melt` is the micro base's melt reference: `train lora --all`
    leaves it alone, and `finetune` (its effect inferred from the init's prompt) reports its loss."""
    import json

    import torch

    from p2e_cli.lora_io import LoraLayer, write_lora
    from p2e_cli.lora_jobs import train_loras
    from p2e_cli.recipes import load_recipe
    from p2e_cli.wan import base_config, layer_table

    def lora_file(path, seed, prompt="melting into liquid"):
        g = torch.Generator().manual_seed(seed)
        return write_lora(path, {l.name: LoraLayer(torch.randn(2, l.in_features, generator=g) * 0.1,
                                                   torch.randn(l.out_features, 2, generator=g) * 0.1, 2.0)
                                 for l in layer_table(base_config(micro_base))}, prompt=prompt)

    teacher = lora_file(tmp_path / "teacher.safetensors", 0)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "melt", "effect_prompt": "melting into liquid",
                                                  "lora_path": str(teacher)}) + "\n")
    imported = cli("lora", "import", "--manifest", tmp_path / "m.jsonl", "--base", "micro", "--json")
    assert imported.code == 0, imported.stderr
    [record] = imported.json()
    assert record["data"]["base"] == micro_base.id
    cfg = load_recipe("lora", ["base=micro", *LORA], kind="lora")
    assert train_loras(["melt"], cfg, skip_trained=True) == []  # --all's skip: nothing to train

    init = lora_file(tmp_path / "init.safetensors", 1)
    tuned = cli("finetune", "--init", init, "--base", "micro", *[f"--set={o}" for o in LORA if o != "steps=2"],
                "--steps", "2", "--json")
    assert tuned.code == 0, tuned.stderr
    result = tuned.json()
    assert result["effect"] == "melt" and result["reference"] == record["id"]
    assert isinstance(result["reference_loss"], float) and result["reference_loss"] > 0
    assert "'melting into liquid'" in result["effect_inferred"]  # said, not silent

    # from the reference itself (by its effect's name): the reference's loss is reached at step 0, and said so
    same = cli("finetune", "--init", "melt", "--base", "micro", *[f"--set={o}" for o in LORA if o != "steps=2"], "--steps", "2")
    assert same.code == 0, same.stderr
    assert f"reference LoRA {record['id']} loss" in same.stdout and "reached at step 0" in same.stdout, same.stdout
    vague = cli("finetune", "--init", lora_file(tmp_path / "vague.safetensors", 2, "quarterly revenue grew"), "--base", "micro")
    assert vague.code == 2 and "cannot tell which effect" in vague.stderr and "name the EFFECT" in " ".join(vague.stderr.split())


def test_lora_data_refuses_what_no_reader_could_use():
    from p2e_cli.errors import P2EError

    good = LoraData(rank=4, alpha=4.0, base="0123456789ab", effect="melt")
    assert good.to_dict()["base"] == "0123456789ab"
    from p2e_cli.registry import Record

    orphan = Record("x" * 12, "lora", None, "imported", "", "", {"rank": 2, "alpha": 2.0, "base": "gone-world"})
    assert LoraData.of(orphan).base is None and LoraData.of(orphan).extra["base_name"] == "gone-world"
    for bad in ({"rank": -1, "alpha": 1.0}, {"rank": 2.5, "alpha": 1.0}, {"rank": 2, "alpha": -1.0}, {"rank": 2, "alpha": float("nan")},
                {"rank": 2, "alpha": 2.0, "base": "tiny"}, {"rank": 2, "alpha": 2.0, "extra": {"rank": 3}}):
        with pytest.raises(P2EError):
            LoraData(**bad)


def test_a_file_of_full_deltas_only_imports(cli, tmp_path):
    """A LoRA file with only .diff keys (no low-rank layer) has rank and alpha 0, and imports."""
    import torch

    from p2e_cli.lora_io import write_lora

    path = write_lora(tmp_path / "diff.safetensors", {}, fmt="wan",
                      diffs={"blocks.0.attn1.to_q.weight": torch.randn(8, 8) * 0.01})
    result = cli("lora", "import", path, "--name", "deltas", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["data"]["rank"] == 0 and result.json()["data"]["diffs"] == ["blocks.0.attn1.to_q.weight"]
