"""Hostile images and videos: `p2e render` checks every input image before any slow work;
`p2e curate add` skips bad clips with a reason and refuses a folder with none usable."""

import os
import subprocess

from tests.reliability import hostile


def test_not_an_image(case):
    image = case.work / "cat.png"
    image.write_text("GIF89a? no, just text\n")
    case.expect(case.p2e("render", image, "-o", "out.mp4"), 2, "cannot read image")
    assert not (case.work / "out.mp4").exists()


def test_truncated_png(case):
    image = hostile.truncated(hostile.png(case.work / "cat.png", size=64), keep=0.5)
    case.expect(case.p2e("render", image, "-o", "out.mp4"), 2, "cannot read image")


def test_decompression_bomb(case):
    image = hostile.png_header_only(case.work / "bomb.png", 100_000, 100_000)
    case.expect(case.p2e("render", image, "-o", "out.mp4"), 2, "bomb.png")


def test_image_that_is_a_device(case):
    image = case.work / "cat.png"
    os.symlink("/dev/zero", image)
    case.expect(case.p2e("render", image), 2, "not a regular file")


def test_negative_frame_rate(case):
    image = hostile.png(case.work / "cat.png")
    case.expect(case.p2e("render", image, "--fps", "-3", "-o", "out.mp4"), 2, "--fps", "greater than or equal to 1")
    assert not (case.work / "out.mp4").exists()  # it was written empty, and recorded as a render


def _clip_folder(case, **videos):
    folder = case.work / "clips"
    folder.mkdir()
    for stem, make in videos.items():
        make(folder / f"{stem}.mp4")
        (folder / f"{stem}.txt").write_text(f"{stem} melting into liquid\n", encoding="utf-8")
    return folder


def test_truncated_mp4(case):
    folder = _clip_folder(case, a=lambda p: hostile.truncated(hostile.video(p), keep=0.3))
    case.expect(case.p2e("curate", "add", folder, "--effect", "melt"), 2, "no valid clips", "cannot read video")


def test_one_frame_video(case):
    folder = _clip_folder(case, a=lambda p: hostile.video(p, frames=1))
    case.expect(case.p2e("curate", "add", folder, "--effect", "melt"), 2, "no valid clips", "too short")


def test_non_utf8_caption(case):
    folder = _clip_folder(case, a=hostile.video)
    (folder / "a.txt").write_bytes(b"caf\xe9 au lait \xff\xfe melting\n")
    case.expect(case.p2e("curate", "add", folder, "--effect", "melt"), 2, "no valid clips", "unreadable caption a.txt")


def test_video_decompression_bomb(case):
    """Half a second of black 8192x8192 H.264: 200 KB that decodes to 400 MB per second."""
    import imageio_ffmpeg

    folder = case.work / "clips"
    folder.mkdir()
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=black:s=8192x8192:d=0.5:r=4", "-c:v", "libx264", "-preset", "ultrafast", folder / "a.mp4"],
                   check=True)
    (folder / "a.txt").write_text("melting\n", encoding="utf-8")
    case.expect(case.p2e("curate", "add", folder, "--effect", "melt"), 2, "8192x8192, larger than p2e accepts")


def test_bad_clips_are_skipped_and_good_ones_kept(case):
    folder = _clip_folder(case, good=hostile.video, bad=lambda p: p.write_bytes(b"\0" * 4096))
    run = case.expect(case.p2e("curate", "add", folder, "--effect", "melt", "--json"), 0)
    report = run.json()
    assert report["counts"] == {"added": 1, "existing": 0, "skipped": 1}
    assert report["skipped"][0]["file"] == "bad.mp4"
