"""The whole lifecycle through the real CLI on a micro world built inside the test session:
synthesise + train reference LoRAs -> canon -> train hypernet -> generate -> render."""

import pytest

from p2e_cli import effects as fx
from p2e_cli.registry import open_registry

LORA = ["steps=6", "batch_size=2", "clips_per_effect=3", "val_clips=1", "validate_every=3", "checkpoint_every=3",
        "rank=2", "alpha=2.0", "group_size=4"]
HYPERNET = ["steps=12", "batch_size=4", "eval_every=6", "checkpoint_every=6", "model.dim=16", "model.heads=2",
            "model.queries=8", "model.fusion_layers=1", "model.feature_dim=16", "model.head_dim=32",
            "flow.steps=2", "flow.batch_size=2", "flow.clips_per_effect=3", "flow.val_clips=1"]  # + the flow phase
EFFECTS = ["melt", "invert", "fade-black", "hue-orange"]  # hue-orange is a held-out effect


def sets(options):
    return [f"--set={o}" for o in options]


@pytest.mark.usefixtures("micro_base")
def test_clips_to_video(cli, tmp_path):
    trained = cli("train", "lora", *EFFECTS, "--base", "micro", *sets(LORA), "--json")
    assert trained.code == 0, trained.stderr
    assert {r["effect"] for r in trained.json()} == set(EFFECTS)
    canon = cli("canon", "--all", "--json")
    assert canon.code == 0 and len(canon.json()) == 4

    hyper = cli("train", "hypernet", "base", "--base", "micro", *sets(HYPERNET), "--json")
    assert hyper.code == 0, hyper.stderr
    metrics = hyper.json()["metrics"]
    assert metrics["step"] == 14 and metrics["heldout_nmse"] is not None and metrics["unseen_prompt_nmse"] is not None
    record = open_registry().get(hyper.json()["id"])
    assert len(record.data["library"]) == 4 and record.data["dataset"]["heldout_effects"] == 1

    out = tmp_path / "melt.safetensors"
    generated = cli("generate", "melting into liquid", "--base", "micro", "-o", out, "--json")
    assert generated.code == 0, generated.stderr
    [entry] = generated.json()
    assert entry["output"] == str(out) and entry["norm"] > 0 and len(entry["nearest"]) == 3
    lora = open_registry().get(entry["record"])
    assert lora.subkind == "predicted" and record.id in lora.parents

    video = tmp_path / "melt.mp4"
    photo = tmp_path / "coffee.png"
    assert cli("effects", "photo", "coffee", "-o", photo, "--size", "32").code == 0
    rendered = cli("render", photo, "--base", "micro", "--lora", out, "-o", video)
    assert rendered.code == 0, rendered.stderr
    assert video.stat().st_size > 0

    batch = tmp_path / "prompts.txt"
    batch.write_text("# effects\nturning to grey\nspinning around\nspinning around\n")
    many = cli("generate", "--batch", batch, "--base", "micro", "--out-dir", tmp_path / "many", "--rank", "1",
               "--scale", "0.5", "--json")
    assert many.code == 0, many.stderr
    outputs = [e["output"] for e in many.json()]
    assert len(set(outputs)) == 3 and outputs[2].endswith("spinning-around-2.safetensors")
    assert all(e["rank"] == 1 for e in many.json())

    report_dir = tmp_path / "eval"
    evaluated = cli("eval", "run", "--base", "micro", *sum((["--effect", e] for e in EFFECTS), []), "--val-clips", "1",
                    "-o", report_dir, "--finetune", "1", "--finetune-recipe", "lora",
                    *[f"--finetune-set={o}" for o in LORA if o != "validate_every=3"], "--finetune-set=validate_every=2",
                    "--json")
    assert evaluated.code == 0, evaluated.stderr
    report = evaluated.json()
    [tuned] = report["finetune"]  # the held-out effect first
    assert tuned["effect"] == "hue-orange" and tuned["steps_scratch"] in (0, 2, 4, 6)
    assert (tuned["speedup"] is None) == (tuned["steps_scratch"] == 0) and (tuned["speedup"] or 1) > 0
    assert [s for s, _ in tuned["curve_init"]] == [0, 2, 4, 6] and tuned["curve_scratch"][-1][1] == tuned["target_loss"]
    assert {"recovery_train", "recovery_heldout", "nmse_heldout", "finetune_speedup"} <= set(report)
    # effect identification: every slot ranked on both held-out photos, rates in [0, 1], the VAE's effect PSNRs
    for key in ("ident_ref_train", "ident_ref_heldout", "ident_pred_train", "ident_pred_heldout", "ident_base"):
        assert 0 <= report[key] <= 1
    assert report["vae_psnr_effects_min"] <= report["vae_psnr_effects_p10"] <= report["vae_psnr_effects_median"]
    assert report["vae_psnr_neutral"] > 0 and len(report["vae_psnr"]["per_effect"]) == len(fx.EFFECTS)
    assert (report_dir / "identification.png").stat().st_size > 0  # melt is one of its rows
    assert all(len(row[f"ident_{slot}"]["ranks"]) == 2 for row in report["effects"] for slot in ("base", "ref", "pred"))
    assert "Effect identification" in (report_dir / "results.md").read_text()
    assert all((report_dir / f"{name}.png").stat().st_size > 0 for name in ("recovery", "finetune", "spectrum"))
    gap = report["spectrum"]["heldout"]
    assert len(gap["reference"]["delta_left"]) == len(gap["predicted"]["delta_left"]) > 2
    assert set(report["effects"][0]["nmse_blocks"]) == {"blocks.0", "blocks.1"}  # the micro world's blocks
    assert "Spectrum gap" in (report_dir / "results.md").read_text()
    assert [r["effect"] for r in report["effects"]] == EFFECTS
    for row in report["effects"]:
        assert row["L0"] > 0 and row["L_ref"] > 0 and {"recovery", "nmse", "cosine", "mse_base", "mse_ref", "mse_pred",
                                                        "beats_misaligned", "beats_random", "beats_mean"} <= set(row)
        assert row["L_mean"] > 0 and row["prompts"]["mean"].startswith("<mean")  # the prompt-blind control
    assert report["summary"]["all"]["beats_mean"] is not None
    assert set(report["summary"]) == {"train", "heldout", "all"}
    assert (report_dir / "results.md").read_text().startswith("# Evaluation on base micro")
    reference_only = cli("eval", "run", "--base", "micro", "--effect", "melt", "--val-clips", "1", "--reference-only",
                         "--no-render", "--json")
    assert reference_only.code == 0 and "recovery" not in reference_only.json()["effects"][0]

    tuned = cli("finetune", "--init", out, "--base", "micro", "--steps", "3",  # the effect: inferred from the prompt
                *sets([o for o in LORA if not o.startswith(("rank", "alpha", "steps"))]), "--json")
    assert tuned.code == 0, tuned.stderr
    result = tuned.json()
    assert result["effect"] == "melt" and result["effect_inferred"] is not None
    assert result["reference_loss"] is not None and [h["step"] for h in result["history"]] == [0, 3]
    record = open_registry().get(result["id"])
    assert record.subkind == "finetuned" and entry["record"] in record.parents  # traces back to the prediction
    from tests.wan_helpers import lineage_kinds

    assert {"run", "clip", "effect", "base", "hypernet", "lora"} <= lineage_kinds(cli, record.id)

    recipe = tmp_path / "ablations.yaml"
    recipe.write_text("kind: ablations\nhypernet: base\nsteps: 4\nval_clips: 1\noverrides: [target=canonical]\n"
                      "variants:\n  full: []\n  no-weights: [model.conditioning=none, validation_effects=1]\n")
    table = cli("eval", "ablations", "--recipe", recipe, "--base", "micro", "-o", tmp_path / "abl", "--json",
                *sets([o for o in HYPERNET if not o.startswith("steps")]))
    assert table.code == 0, table.stderr
    rows = table.json()["rows"]
    assert [r["variant"] for r in rows] == ["full", "no-weights"]
    assert open_registry().get(rows[0]["hypernet"]).data["recipe"]["target"] == "canonical"  # the common override
    assert all(r["heldout_nmse"] is not None and r["recovery_heldout"] is not None for r in rows)
    assert rows[0]["validation_nmse"] is None and rows[1]["validation_nmse"] is not None
    markdown = (tmp_path / "abl" / "ablations.md").read_text()
    assert "| no-weights |" in markdown and "validation_nmse" in markdown
    again = cli("eval", "ablations", "--recipe", recipe, "--base", "micro", "--json",
                *sets([o for o in HYPERNET if not o.startswith("steps")]))
    assert again.json()["rows"] == rows  # reused, not retrained, nor measured again:
    kept = open_registry().get(rows[0]["hypernet"]).data["ablation"]["heldout"]  # the measurement lives on the record
    assert kept["summary"]["recovery_median"] == rows[0]["recovery_heldout"] and kept["measured_on"]["val_clips"] == 1
    recipe.write_text(recipe.read_text().replace("val_clips: 1\n", "val_clips: 1\nheldout: false\n"))
    sweep = cli("eval", "ablations", "--recipe", recipe, "--base", "micro", "-o", tmp_path / "sweep", "--json",
                *sets([o for o in HYPERNET if not o.startswith("steps")]))
    assert sweep.code == 0, sweep.stderr
    assert [r["hypernet"] for r in sweep.json()["rows"]] == [r["hypernet"] for r in rows]  # the same networks, reused
    assert not any("recovery_heldout" in r or "heldout_nmse" in r for r in sweep.json()["rows"])  # a sweep: no test split
    assert sweep.json()["rows"][1]["validation_nmse"] == rows[1]["validation_nmse"]
    assert "held-out effects not measured" in (tmp_path / "sweep" / "ablations.md").read_text()
