"""p2e effects through the real CLI: the issue's Done-when for `effects ls --json`, show and sheet."""

import numpy as np

from p2e_cli.video import read_image, read_video


def test_ls_json_lists_at_least_70_effects_and_14_heldout(cli):
    records = cli("effects", "ls", "--json").json()
    assert len(records) >= 70
    assert all(r["split"] in ("train", "heldout") for r in records)
    heldout = cli("effects", "ls", "--split", "heldout", "--json").json()
    assert len(heldout) >= 14 and all(r["split"] == "heldout" for r in heldout)
    assert len(heldout) == sum(r["split"] == "heldout" for r in records)
    spins = cli("effects", "ls", "--family", "spin", "--json").json()
    assert {"spin-cw", "spin-ccw", "spin-fade-black"} <= {r["name"] for r in spins}
    human = cli("effects", "ls")
    assert human.code == 0 and "melt" in human.stdout


def test_show_prints_prompts_and_writes_a_sheet_or_clip(cli, tmp_path):
    shown = cli("effects", "show", "spin-fade-black", "--json").json()
    assert shown["split"] == "heldout" and shown["holdout"] == "composition"
    assert len(shown["prompts"]) >= 5 and shown["heldout_prompts"]
    human = cli("effects", "show", "melt")
    assert human.code == 0 and "melting into liquid" in human.stdout and "held-out prompts" in human.stdout
    sheet = tmp_path / "melt.png"
    assert cli("effects", "show", "melt", "-o", sheet, "--photo", "coffee", "--photo", "hills").code == 0
    assert read_image(sheet).shape[0] > 2 * 64
    clip = tmp_path / "melt.gif"
    assert cli("effects", "show", "melt", "-o", clip, "--frames", "9", "--size", "32").code == 0
    frames, _ = read_video(clip)
    assert frames.shape[1:] == (32, 32, 3) and len(frames) == 9


def test_show_and_ls_errors_are_exit_2(cli, tmp_path):
    result = cli("effects", "show", "melts")
    assert result.code == 2 and "did you mean" in result.stderr
    assert cli("effects", "ls", "--split", "validation").code == 2
    assert cli("effects", "ls", "--family", "nosuch").code == 2
    assert cli("effects", "show", "melt", "-o", tmp_path / "x.png", "--photo", "nosuch").code == 2


def test_sheet_writes_one_row_per_effect(cli, tmp_path):
    out = tmp_path / "spins.png"
    result = cli("effects", "sheet", "-o", out, "--family", "spin", "--size", "32", "--panels", "1", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["effects"] == len(cli("effects", "ls", "--family", "spin", "--json").json())
    image = read_image(out)
    assert image.shape[0] == result.json()["height"] and np.ptp(image) > 0
    assert cli("effects", "sheet", "-o", tmp_path / "x.jpg").code == 2
