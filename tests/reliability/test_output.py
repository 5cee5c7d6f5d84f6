"""Text from files shown to a person (captions, LoRA metadata, file names): printed literally.
Rich markup in it must neither crash the output ('[/bold]') nor style it, and control characters
must not reach the terminal (escape sequences could clear or retitle it)."""

from tests.reliability import hostile

HOSTILE = "[/bold] melting [red]red[/red] [link=file:///etc/passwd]x[/link] \x1b]0;pwned\x07 \x1b[2J"
SHOWN = r"[/bold] melting [red]red[/red] [link=file:///etc/passwd]x[/link] \x1b]0;pwned\x07 \x1b[2J"


def shown_literally(run, text=SHOWN):
    assert text in " ".join(run.stdout.split()), run.stdout
    assert "\x1b" not in run.stdout + run.stderr and "\x07" not in run.stdout + run.stderr


def test_a_caption_is_shown_literally(case):
    folder = case.work / "clips"
    folder.mkdir()
    hostile.video(folder / "a.mp4")
    (folder / "a.txt").write_text(HOSTILE, encoding="utf-8")
    case.expect(case.p2e("curate", "add", folder, "--effect", "melt"), 0)
    shown_literally(case.expect(case.p2e("curate", "ls", "--effect", "melt"), 0))
    clip = case.p2e("ls", "clip", "--json").json()[-1]["id"]
    shown = case.expect(case.p2e("show", clip), 0)
    assert r"[/bold] melting" in shown.stdout and "\x1b" not in shown.stdout


def test_lora_metadata_is_shown_literally(case):
    lora = hostile.safetensors_file(case.work / "melt.safetensors", hostile.lora_tensors(),
                                    {"modelspec.title": HOSTILE})
    shown_literally(case.expect(case.p2e("lora", "inspect", lora), 0))


def test_file_names_with_brackets(case):
    name = "coffee [final] [red].png"  # rich would drop both "tags" from the message
    run = case.expect(case.p2e("effects", "photo", "coffee", "-o", name), 0)
    assert f"wrote {name}" in run.stderr and (case.work / name).is_file()
    lora = hostile.good_lora(case.work / "melt [bold].safetensors")
    assert "melt [bold].safetensors" in case.expect(case.p2e("lora", "inspect", lora), 0).stdout


def test_progress_in_a_log_file_prints_plain_lines(monkeypatch, capsys):
    """Long builds run under nohup: with stderr not a terminal, progress is plain, throttled lines
    with the count and the latest fields (the final one always), not one bar at the very end."""
    from p2e_cli import console

    monkeypatch.setattr(console, "LOG_EVERY", 0.0)
    monkeypatch.setattr(console, "err", console.Console(stderr=True, highlight=False, force_terminal=False))
    with console.progress("train [x]", total=3) as advance:
        advance(loss=0.5)
        advance()
        advance(loss=0.25)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[2] for line in lines] == ["1/3", "2/3", "3/3"]
    assert lines[0].startswith("train [x] 1/3") and lines[1].endswith("loss=0.5") and lines[2].endswith("loss=0.25")
