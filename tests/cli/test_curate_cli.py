"""p2e curate through the real CLI (in-process), including the issue's Done-when for `curate add`."""


import pytest

from p2e_cli.effects import render
from p2e_cli.photos import random_view
from p2e_cli.video import write_video


@pytest.fixture
def clip_folder(tmp_path):
    """One good clip, one corrupt mp4, one missing caption, one 3-frame clip."""
    folder = tmp_path / "melt_clips"
    folder.mkdir()
    clip = render("melt", random_view("chelsea", 48, 1), 25)
    write_video(clip, folder / "good.mp4", fps=16)
    (folder / "good.txt").write_text("the cat melts\n")
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"garbage" * 300)
    (folder / "corrupt.txt").write_text("a broken file")
    write_video(clip, folder / "no_caption.mp4", fps=16)
    write_video(clip[:3], folder / "three_frames.mp4", fps=16)
    (folder / "three_frames.txt").write_text("too short")
    return folder


def test_add_ingests_one_explains_three_and_exits_0(cli, clip_folder):
    result = cli("curate", "add", clip_folder, "--effect", "melt")
    assert result.code == 0, result.stderr
    assert "added 1 clip(s) of melt" in result.stdout and "skipped 3" in result.stdout
    for name, why in (("corrupt.mp4", "cannot read video"), ("no_caption.mp4", "no caption"),
                      ("three_frames.mp4", "too short")):
        assert f"skipped {name}: {why}" in result.stdout.replace("\n", " ").replace("  ", " ")
    report = cli("curate", "add", clip_folder, "--effect", "melt", "--json").json()
    assert report["counts"] == {"added": 0, "existing": 1, "skipped": 3}
    clips = cli("curate", "ls", "--effect", "melt", "--json").json()
    assert len(clips) == 1 and clips[0]["data"]["caption"] == "the cat melts"


def test_add_exits_2_when_nothing_is_valid(cli, clip_folder):
    for name in ("good.mp4", "good.txt"):
        (clip_folder / name).unlink()
    result = cli("curate", "add", clip_folder, "--effect", "melt")
    assert result.code == 2 and "no valid clips" in result.stderr and "Traceback" not in result.stderr
    assert cli("curate", "add", clip_folder / "nowhere", "--effect", "melt").code == 2
    assert cli("curate", "add", clip_folder, "--effect", "melt", "--fps", "fast").code == 2


def test_synth_ls_export_rm(cli, tmp_path):
    first = cli("curate", "synth", "--effects", "zoom-in,invert", "-n", "2", "--frames", "9", "--size", "32", "--json")
    assert first.code == 0, first.stderr
    assert first.json()["counts"] == {"added": 4, "existing": 0}
    again = cli("curate", "synth", "--effects", "zoom-in", "--effects", "invert", "-n", "2", "--frames", "9",
                "--size", "32", "--json").json()
    assert again["counts"] == {"added": 0, "existing": 4}
    assert cli("curate", "synth", "--effects", "invert", "-n", "1", "--frames", "9", "--size", "32",
               "--photos", "heldout").code == 0
    listed = cli("curate", "ls", "--json").json()
    assert len(listed) == 5 and {c["data"]["effect"] for c in listed} == {"zoom-in", "invert"}
    assert len(cli("curate", "ls", "--effect", "invert", "--photos", "heldout", "--json").json()) == 1
    human = cli("curate", "ls")
    assert human.code == 0 and "zoom-in" in human.stdout

    out = tmp_path / "trainer"
    exported = cli("curate", "export", "invert", "-o", out, "--json")
    assert exported.code == 0, exported.stderr
    assert len(exported.json()["clips"]) == 2 and (out / "metadata.jsonl").exists()
    assert len(list(out.glob("*.mp4"))) == 2 and len(list(out.glob("*.txt"))) == 2

    removed = cli("curate", "rm", "invert", "--json").json()["removed"]
    assert len(removed) == 3
    assert len(cli("curate", "ls", "--json").json()) == 2
    assert cli("doctor", "--json").json()["ok"]


def test_synth_bad_input_is_exit_2(cli):
    assert cli("curate", "synth", "--effects", "melt", "--split", "train").code == 2
    assert cli("curate", "synth", "--effects", "nosuch").code == 2
    assert cli("curate", "synth", "--split", "validation").code == 2
    assert cli("curate", "synth", "--effects", "melt", "--frames", "16").code == 2
    assert cli("curate", "synth", "--effects", "melt", "--size", "huge").code == 2
    assert cli("curate", "export", "melt", "-o", "/nonexistent/dir/x").code == 2
    assert cli("curate", "rm", "deadbeef").code == 2


def test_encode_caches_latents_per_base(cli, micro_base):
    assert cli("curate", "synth", "--effects", "melt", "-n", "2", "--frames", "5", "--size", "32").code == 0
    first = cli("curate", "encode", "--base", "micro", "--json")
    assert first.code == 0, first.stderr
    report = first.json()
    assert report["encoded"] == 2 and report["cached"] == 0
    again = cli("curate", "encode", "--base", "micro", "--effect", "melt", "--json").json()
    assert again["encoded"] == 0 and again["cached"] == 2