"""p2e base, p2e lora and p2e render through the real CLI (in-process), on tiny Wan bases."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from p2e_cli.lora_io import LoraFile, LoraLayer, write_lora
from p2e_cli.wan import MODULE_TYPES, layer_table
from tests.wan_helpers import one_thread, picture, random_lora, tiny_base  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def bases(cli):
    assert cli("base", "add", "t21", "--path", tiny_base("wan21")).code == 0
    assert cli("base", "add", "t22", "--path", tiny_base("wan22")).code == 0
    return ("t21", "t22")


@pytest.fixture
def files(tmp_path):
    table = layer_table(tiny_base("wan21") / "transformer", targets=MODULE_TYPES)
    image = tmp_path / "cat.png"
    Image.fromarray(picture(48, seed=1)).save(image)
    return {"image": image,
            "melt": write_lora(tmp_path / "melt.safetensors", random_lora(table, seed=1), prompt="melting into liquid"),
            "spin": write_lora(tmp_path / "spin.safetensors", random_lora(table, seed=2), prompt="spinning clockwise")}


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("component,key,value,named", [
    ("vae", "latents_mean", [0.0] * 16, "latents_mean has 16 entries, z_dim is 4"),
    ("vae", "z_dim", "four", "z_dim='four'"),
    ("transformer", "num_layers", 1e9, "num_layers=1000000000.0"),
])
def test_base_add_refuses_inconsistent_configs(cli, tmp_path, component, key, value, named):
    """Caught at `base add` (exit 2, the key named), not as a reshape error in render or a hang."""
    import json

    broken = tmp_path / "broken"
    shutil.copytree(tiny_base("wan22"), broken)
    config = broken / component / "config.json"
    data = json.loads(config.read_text())
    data[key] = value
    config.write_text(json.dumps(data))
    bad = cli("base", "add", "broken", "--path", broken)
    assert bad.code == 2 and named in " ".join(bad.stderr.split()), bad.stderr
    assert cli("base", "ls", "--json").json() == []


def test_base_add_ls_show_rm(cli, bases, tmp_path):
    listed = cli("base", "ls", "--json").json()
    assert [b["name"] for b in listed] == ["t21", "t22"] and listed[0]["family"] == "wan21"
    shown = cli("base", "show", "t22", "--layers", "--json").json()
    assert shown["experts"] == ["transformer", "transformer_2"] and shown["n_layers"] == len(shown["layers"]) == 20
    assert shown["path"] == str(tiny_base("wan22").resolve()) and len(shown["layer_table"]) == 16
    human = cli("base", "show", "t21")
    assert human.code == 0 and "wan21" in human.stdout and "adaptable layers: 20" in human.stdout
    assert cli("base", "add", "t21", "--path", tiny_base("wan21")).code == 2  # name taken
    broken = tmp_path / "broken"
    shutil.copytree(tiny_base("wan22"), broken)
    shutil.rmtree(broken / "text_encoder")
    bad = cli("base", "add", "broken", "--path", broken)
    assert bad.code == 2 and "folder text_encoder/ is missing" in " ".join(bad.stderr.split())
    assert cli("base", "rm", "t22").code == 0
    assert [b["name"] for b in cli("base", "ls", "--json").json()] == ["t21"]
    assert tiny_base("wan22").is_dir()  # unregistering leaves the folder alone


def test_render_is_deterministic_and_recorded(cli, bases, files, tmp_path):
    image, melt = files["image"], files["melt"]
    first, second, other = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for out, seed in ((first, 7), (second, 7), (other, 8)):
        result = cli("render", image, "--base", "t21", "--lora", f"{melt}:0.8", "--seed", seed, "-o", out, "--json")
        assert result.code == 0, result.stderr
    assert np.array_equal(read_png(first), read_png(second))  # same seed, same frames
    assert not np.array_equal(read_png(first), read_png(other))
    payload = result.json()
    assert payload["prompt"] == "melting into liquid"  # from the LoRA's metadata
    assert payload["frames"] == 5 and payload["size"] == [32, 32] and payload["loras"][0]["scale"] == 0.8
    renders = cli("ls", "render", "--json").json()
    assert len(renders) == 3
    data = renders[-1]["data"]
    assert data["seed"] == 8 and data["base"] == "t21" and data["loras"][0]["path"] == str(melt)
    assert data["output"] == str(other.resolve()) and data["image"]["sha256"]
    base_id = cli("base", "show", "t21", "--json").json()["id"]
    assert renders[-1]["parents"] == [base_id]
    video = tmp_path / "clip.mp4"
    assert cli("render", image, "--base", "t22", "--lora", melt, "-o", video, "--frames", "9").code == 0
    assert video.stat().st_size > 0


def test_compare_sheet_has_a_row_per_variant(cli, bases, files, tmp_path):
    sheet = tmp_path / "compare.png"
    result = cli("render", files["image"], "--base", "t21", "--lora", files["melt"], "--lora", f"{files['spin']}:0.5",
                 "--compare", "-o", sheet)
    assert result.code == 0, result.stderr
    pixels = read_png(sheet)
    gap, size = 2, 32
    assert pixels.shape[0] == 3 * (size + gap) + gap  # rows: no LoRA, melt, spin
    rows = [pixels[gap + i * (size + gap): gap + i * (size + gap) + size, -(size + gap):-gap] for i in range(3)]
    assert not np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[1], rows[2])
    assert cli("render", files["image"], "--base", "t21", "--lora", files["melt"], "--compare", "-o",
               tmp_path / "x.mp4").code == 2  # a compare is a sheet


def test_batch_with_previews(cli, bases, files, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(picture(40, seed=i)).save(folder / f"p{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "renders"
    result = cli("render", "--batch", folder, "--base", "t22", "--lora", files["melt"], "--format", "gif",
                 "--preview", "-o", out, "--json")
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.gif", "p1.gif"]
    assert len(result.json()["renders"]) == 2
    preview = files["melt"].with_suffix(".webp")
    assert preview.is_file() and result.json()["previews"] == {str(files["melt"]): str(preview)}
    assert Image.open(preview).n_frames == 5


def test_lora_inspect_convert_import_and_render_by_id(cli, bases, files, tmp_path):
    info = cli("lora", "inspect", files["melt"], "--json").json()
    assert info["format"] == "diffusers" and info["layers"] == 24 and info["ranks"] == [4, 6]
    assert info["alphas"] == [2.0, 8.0] and set(info["block_norms"]) == {"0", "1"}
    fits = {c["base"]: c for c in info["compatibility"]}
    assert fits["t21"]["compatible"] and fits["t22"]["compatible"] and len(fits["t22"]["skipped"]) == 4
    assert info["metadata"]["p2e.prompt"] == "melting into liquid"
    human = cli("lora", "inspect", files["melt"], "--base", "t21")
    assert human.code == 0 and "fits base t21" in human.stdout
    comfy = tmp_path / "melt_comfy.safetensors"
    converted = cli("lora", "convert", files["melt"], "--to", "musubi", "-o", comfy, "--json")
    assert converted.code == 0 and converted.json()["from"] == "diffusers"
    assert cli("lora", "inspect", comfy, "--json").json()["format"] == "musubi"
    assert cli("lora", "convert", files["melt"], "--to", "a1111", "-o", comfy).code == 2

    imported = cli("lora", "import", comfy, "--name", "melt", "--effect", "melt", "--kind", "reference",
                   "--base", "t21", "--json")
    assert imported.code == 0, imported.stderr
    record = imported.json()
    assert record["subkind"] == "reference" and record["data"]["format"] == "musubi" and record["files"]["lora"]
    assert cli("lora", "import", comfy, "--kind", "reference").code == 2  # a reference needs --effect
    out = tmp_path / "by_id.gif"
    result = cli("render", files["image"], "--base", "t21", "--lora", "lora:melt:0.5", "--preview", "-o", out, "--json")
    assert result.code == 0, result.stderr
    shown = cli("show", "lora:melt", "--json").json()
    assert "preview" in shown["files"]  # a registry LoRA keeps its preview in the store
    render_record = cli("ls", "render", "--json").json()[-1]
    assert record["id"] in render_record["parents"]


def test_render_errors_are_bad_input(cli, bases, files, tmp_path, home):
    image, melt = files["image"], files["melt"]
    text = tmp_path / "photo.png"
    text.write_text("this is not a picture")
    cases = {
        "cannot read image": ("render", text, "--base", "t21"),
        "does not exist": ("render", tmp_path / "missing.png", "--base", "t21"),
        "is not 4k+1": ("render", image, "--base", "t21", "--frames", "6"),
        "multiples of 16": ("render", image, "--base", "t21", "--size", "40x40"),
        "--compare needs at least one --lora": ("render", image, "--base", "t21", "--compare"),
        "--preview needs at least one --lora": ("render", image, "--base", "t21", "--preview"),
        "cannot write": ("render", image, "--base", "t21", "-o", tmp_path / "out.txt"),
        "neither a file nor a LoRA": ("render", image, "--base", "t21", "--lora", "nothing-here"),
        "give one IMAGE or --batch": ("render", "--base", "t21"),
        "no low-noise expert": ("render", image, "--base", "t21", "--lora", f"{melt}@low"),
        "unknown device": ("render", image, "--base", "t21", "--device", "gpu"),
        "unknown dtype": ("render", image, "--base", "t21", "--dtype", "float8"),
    }
    if not torch.cuda.is_available():
        cases["no CUDA GPU"] = ("render", image, "--base", "t21", "--device", "cuda")
    wide = LoraFile({"blocks.0.attn1.to_q": LoraLayer(torch.zeros(2, 64), torch.zeros(64, 2), 2.0)})
    cases["does not fit base t21"] = ("render", image, "--base", "t21", "--lora",
                                      write_lora(tmp_path / "wide.safetensors", wide))
    pickle = tmp_path / "evil.safetensors"
    torch.save({"a": torch.zeros(2)}, pickle)
    cases["never loads pickles"] = ("render", image, "--base", "t21", "--lora", pickle)
    for message, args in cases.items():
        result = cli(*args)
        assert result.code == 2, (message, result.stderr)
        assert message in " ".join(result.stderr.split()), (message, result.stderr)
        assert "Traceback" not in result.stderr
    assert cli("lora", "import", pickle).code == 2
    assert cli("ls", "render", "--json").json() == []  # nothing recorded for failed renders


def test_render_takes_an_effect_name(cli, bases, files, tmp_path):
    """`--lora melt` is the newest reference LoRA of the effect melt on the base (issue 31)."""
    image, melt = files["image"], files["melt"]
    missing = cli("render", image, "--lora", "melt", "--base", "t21", "-o", tmp_path / "x.png", "--frames", "5", "--steps", "2")
    assert missing.code == 2 and "nor an effect with a reference LoRA on base t21" in " ".join(missing.stderr.split())
    assert cli("lora", "import", melt, "--name", "my-melt", "--effect", "melt", "--kind", "reference", "--base", "t21").code == 0
    by_file, by_name = tmp_path / "file.png", tmp_path / "name.png"
    for out, source in ((by_file, melt), (by_name, "melt")):
        run = cli("render", image, "--lora", source, "--base", "t21", "-o", out, "--frames", "5", "--steps", "2", "--seed", "3")
        assert run.code == 0, run.stderr
    assert np.array_equal(read_png(by_file), read_png(by_name))
    listed = cli("ls", "lora")
    assert listed.code == 0 and "effect" in listed.stdout and "melt" in listed.stdout.split("my-melt", 1)[1]
    assert cli("render", image, "--lora", "melt", "--base", "t22", "-o", tmp_path / "y.png", "--frames", "5").code == 2
    # the other commands that take a LoRA take the effect's name too
    from p2e_cli.files import sha256_file

    inspected = cli("lora", "inspect", "melt", "--base", "t21", "--json")
    assert inspected.code == 0 and inspected.json()["sha256"] == sha256_file(melt)
    converted = cli("lora", "convert", "melt", "--base", "t21", "--to", "comfyui", "-o", tmp_path / "c.safetensors")
    assert converted.code == 0, converted.stderr
    mixed = cli("lora", "mix", "melt:0.5", "--base", "t21", "-o", tmp_path / "m.safetensors")
    assert mixed.code == 0, mixed.stderr
    assert cli("lora", "mix", "melt:0.5", "--base", "t22", "-o", tmp_path / "n.safetensors").code == 2
