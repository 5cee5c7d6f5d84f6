"""Hostile prompts, through the commands that take one: `p2e render --prompt` on the micro world
and `p2e generate` (prompt argument and --batch file) with the shipped tiny hypernetwork. Any text
renders / generates and is recorded exactly; bytes that are not UTF-8 are bad input.
"""

import pytest

from tests.reliability import hostile

CONTROL = "melt\x1b[31m red\x07\r\n\ttab\x7f\x08 [bold]rich markup[/bold] [/] \u202eevil\u200b \U0001f525"


def render(case, micro, prompt):
    image = hostile.png(case.work / "cat.png")
    return case.p2e("render", image, "--base", micro, "--prompt", prompt, "--steps", "1", "-o", "out.mp4", "--json")


@pytest.mark.parametrize("prompt", [pytest.param("", id="empty"), pytest.param("melting " * 12_800, id="100KB"),
                                    pytest.param(CONTROL, id="control-characters")])
def test_any_text_renders_and_is_recorded_exactly(case, micro, prompt):
    run = case.expect(render(case, micro, prompt), 0)
    assert run.json()["prompt"] == prompt
    record = case.p2e("ls", "render", "--json").json()[0]
    assert record["data"]["prompt"] == prompt and (case.work / "out.mp4").stat().st_size > 0


def test_non_utf8_bytes(case, micro):
    case.expect(render(case, micro, b"caf\xe9 \xff\xfe melting"), 2, "--prompt", "UTF-8")
    assert not (case.work / "out.mp4").exists()


def test_generate_records_any_text_exactly_and_refuses_non_utf8(case):
    run = case.expect(case.p2e("generate", CONTROL, "-o", "c.safetensors", "--json"), 0)
    [entry] = run.json()
    assert entry["prompt"] == CONTROL
    assert case.p2e("ls", "lora", "--subkind", "predicted", "--json").json()[0]["data"]["prompt"] == CONTROL
    case.expect(case.p2e("generate", b"caf\xe9 \xff melting", "-o", "d.safetensors"), 2, "UTF-8")
    (case.work / "prompts.txt").write_bytes(b"melting\ncaf\xe9 \xff\n")
    case.expect(case.p2e("generate", "--batch", case.work / "prompts.txt", "--out-dir", "loras"), 2, "not UTF-8")
    assert not (case.work / "d.safetensors").exists() and not (case.work / "loras").exists()
