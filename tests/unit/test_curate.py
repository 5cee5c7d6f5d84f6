"""The curate library: synthesis (exact ground truth, determinism, dedupe), real clips, listing, export."""

import json

import numpy as np
import pytest

from p2e_cli import curate
from p2e_cli.effects import get_effect, render
from p2e_cli.errors import P2EError
from p2e_cli.photos import photo_names, random_view
from p2e_cli.registry import open_registry
from p2e_cli.video import write_video


@pytest.fixture
def reg(home):
    registry = open_registry()
    yield registry
    registry.close()


def synth(reg, names, n=2, **kw):
    return curate.synth(reg, curate.select_effects(names), n, **{"frames": 9, "size": (32, 32), **kw})


def test_synth_stores_exact_ground_truth_clips(reg):
    report = synth(reg, ["melt", "spin-fade-black"], n=2)
    assert len(report.added) == 4 and not report.existing
    for record in report.added:
        d = record.data
        effect = get_effect(d["effect"])
        frames = curate.load_clip(reg, record)
        assert frames.shape == (9, 32, 32, 3) and frames.dtype == np.uint8
        assert d["caption"] in effect.prompts and d["caption_split"] == "train"
        assert d["photo"] in photo_names("train") and d["photo_split"] == "train"
        assert d["effect_split"] == effect.split and d["hash"] == curate.frames_hash(frames)
        # the record holds everything needed to re-render the clip exactly
        again = render(effect, random_view(d["photo"], (d["height"], d["width"]), d["view_seed"]), d["frames"], d["params"])
        assert np.array_equal(again, frames)
        parent = reg.get(record.parents[0])
        assert parent.kind == "effect" and parent.name == d["effect"] and parent.data["split"] == effect.split


def test_synth_is_deterministic_and_does_not_duplicate(reg, tmp_path):
    first = synth(reg, ["dissolve", "zoom-in"], n=3, seed=5)
    second = synth(reg, ["dissolve", "zoom-in"], n=3, seed=5)
    assert not second.added and [r.id for r in second.existing] == [r.id for r in first.added]
    assert len(reg.ls("clip")) == 6 and len(reg.ls("effect")) == 2
    other = open_registry(tmp_path / "other")
    alone = synth(other, ["zoom-in"], n=3, seed=5)  # same clips whatever else is synthesised
    assert [r.id for r in alone.added] == [r.id for r in first.added[3:]]
    assert len(synth(other, ["zoom-in"], n=3, seed=6).added) == 3


def test_validation_clips_use_heldout_photos_only(reg):
    report = synth(reg, ["hue-orange"], n=3, photos="heldout")
    assert {r.data["photo"] for r in report.added} <= set(photo_names("heldout"))
    assert all(r.data["photo_split"] == "heldout" and r.data["effect_split"] == "heldout" for r in report.added)
    synth(reg, ["hue-orange"], n=2)
    assert len(curate.list_clips(reg, "hue-orange", photos="train")) == 2
    assert len(curate.list_clips(reg, "hue-orange", photos="heldout")) == 3
    assert len(curate.list_clips(reg, source="real")) == 0
    with pytest.raises(P2EError):
        synth(reg, ["melt"], photos="all")


def test_bad_synth_arguments(reg):
    with pytest.raises(P2EError, match="4k\\+1"):
        synth(reg, ["melt"], frames=10)
    with pytest.raises(P2EError, match="unknown effect"):
        curate.select_effects(["melt", "nosuch"])
    with pytest.raises(P2EError):
        curate.list_clips(reg, effect="melt")
    assert curate.parse_size("48x80") == (48, 80) and curate.parse_size(64) == (64, 64)
    for bad in ("big", "60", "8", "64x"):
        with pytest.raises(P2EError):
            curate.parse_size(bad)


def test_remove_clips_by_id_or_effect(reg):
    report = synth(reg, ["melt", "invert"], n=2)
    assert [r.id for r in curate.remove_clips(reg, [report.added[0].id[:6]])] == [report.added[0].id]
    assert len(curate.remove_clips(reg, ["invert"])) == 2
    assert [r.id for r in reg.ls("clip")] == [report.added[1].id]
    assert reg.doctor()["ok"] and not reg.doctor()["orphans"]
    reg.add("lora", name="trained-on-it", subkind="reference", parents=[report.added[1].id])
    with pytest.raises(P2EError, match="dependent"):
        curate.remove_clips(reg, ["melt"])
    assert len(curate.remove_clips(reg, ["melt"], force=True)) == 1


def test_normalise_resamples_fps_trims_to_4k_plus_1_and_centre_crops():
    frames = np.zeros((40, 30, 60, 3), np.uint8)
    frames[:, :, 15:45] = 200  # a centred square region: the centre crop keeps only it
    frames[np.arange(40), 0, 0, 0] = np.arange(40)  # marks which source frame each output came from
    half = curate.normalise(frames, 32.0, 16.0, 81, (16, 16))
    assert half.shape == (17, 16, 16, 3) and half.min() > 150  # 20 frames at 16 fps -> 17
    fit = curate.normalise(frames, 32.0, None, 9, (16, 32))
    assert fit.shape == (9, 16, 32, 3)
    with pytest.raises(ValueError, match="too short"):
        curate.normalise(frames[:8], 32.0, 16.0, 17, (16, 16))


@pytest.fixture
def clip_folder(tmp_path):
    """One good clip, one corrupt mp4, one without a caption, one with 3 frames."""
    folder = tmp_path / "clips"
    folder.mkdir()
    clip = render("spin-cw", random_view("hills", (40, 56), 0), 21)
    write_video(clip, folder / "good.mp4", fps=16)
    (folder / "good.txt").write_text("the hills spin clockwise\n")
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (folder / "corrupt.txt").write_text("broken")
    write_video(clip, folder / "uncaptioned.mp4", fps=16)
    write_video(clip[:3], folder / "short.mp4", fps=16)
    (folder / "short.txt").write_text("too short")
    return folder


def test_add_ingests_the_good_clip_and_explains_the_rest(reg, clip_folder):
    report = curate.add_clips(reg, clip_folder, "spin-cw", fps=16, max_frames=17, size=(32, 32))
    assert len(report.added) == 1 and not report.existing
    reasons = {s["file"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"corrupt.mp4", "uncaptioned.mp4", "short.mp4"}
    assert "cannot read video" in reasons["corrupt.mp4"]
    assert "no caption" in reasons["uncaptioned.mp4"] and "uncaptioned.txt" in reasons["uncaptioned.mp4"]
    assert "too short" in reasons["short.mp4"]
    record = report.added[0]
    assert record.data["caption"] == "the hills spin clockwise" and record.data["source"] == "real"
    assert curate.load_clip(reg, record).shape == (17, 32, 32, 3)
    again = curate.add_clips(reg, clip_folder, "spin-cw", fps=16, max_frames=17, size=(32, 32))
    assert not again.added and [r.id for r in again.existing] == [record.id]


def test_add_reads_a_jsonl_manifest_and_refuses_when_nothing_is_valid(reg, clip_folder, tmp_path):
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"video": "clips/good.mp4", "caption": "spinning"}),
        "{not json",
        json.dumps({"video": "clips/missing.mp4", "caption": "gone"}),
        json.dumps({"video": "clips/short.mp4"}),
    ]) + "\n")
    report = curate.add_clips(reg, manifest, "my-spin", fps=None, max_frames=9, size=(16, 24), heldout=True)
    assert len(report.added) == 1 and report.added[0].data["frames"] == 9
    assert curate.list_clips(reg, "my-spin", photos="heldout") == report.added
    assert len(report.skipped) == 3 and "not JSON" in report.skipped[0]["reason"]
    assert reg.get("effect:my-spin").data["source"] == "real"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "short.mp4").write_bytes((clip_folder / "short.mp4").read_bytes())
    (empty / "short.txt").write_text("short")
    with pytest.raises(P2EError, match="no valid clips"):
        curate.add_clips(reg, empty, "my-spin")
    (empty / "short.mp4").unlink()
    with pytest.raises(P2EError, match="no videos"):
        curate.add_clips(reg, empty, "my-spin")
    with pytest.raises(P2EError, match="does not exist"):
        curate.add_clips(reg, tmp_path / "nowhere", "my-spin")
    with pytest.raises(P2EError, match="invalid effect name"):
        curate.add_clips(reg, clip_folder, "../etc")


def test_export_writes_the_trainer_layout_that_add_reads_back(reg, tmp_path):
    report = synth(reg, ["pixelate"], n=2, frames=9, size=(32, 32))
    synth(reg, ["pixelate"], n=1, photos="heldout")
    out = tmp_path / "export"
    rows = curate.export_clips(reg, "pixelate", out)
    assert [r["clip"] for r in rows] == [r.id for r in report.added]  # train photos only by default
    for row in rows:
        assert (out / row["video"]).stat().st_size > 0
        assert (out / row["video"]).with_suffix(".txt").read_text().strip() == row["caption"]
    lines = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [x["video"] for x in lines] == [r["video"] for r in rows]
    back = curate.add_clips(open_registry(tmp_path / "other"), out, "pixelate", fps=8, max_frames=9, size=(32, 32))
    assert len(back.added) == 2 and not back.skipped


def test_read_video_stops_decoding_at_its_memory_cap(tmp_path, monkeypatch):
    from p2e_cli import video

    path = write_video(np.zeros((9, 32, 32, 3), np.uint8), tmp_path / "clip.mp4")
    assert video.read_video(path)[0].shape == (9, 32, 32, 3)
    monkeypatch.setattr(video, "MAX_VIDEO_BYTES", 4 * 32 * 32 * 3)
    with pytest.raises(P2EError, match="decodes to more than"):
        video.read_video(path)
