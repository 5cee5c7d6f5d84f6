"""Hostile paths and names: nothing is written outside the home or under a name that escapes it,
outputs go only where asked, and a registry that cannot be written says so."""

import os
import subprocess

import pytest

from tests.reliability import hostile


def test_dot_dot_traversal_in_a_name(case):
    lora = hostile.good_lora(case.work / "melt.safetensors")
    case.expect(case.p2e("lora", "import", lora, "--name", "../../evil"), 2, "invalid name '../../evil'")
    assert not list(case.root.rglob("evil*"))
    case.expect(case.p2e("lora", "import", lora, "--name", "seed-lora"), 2, "a lora named 'seed-lora' already exists")


def test_absolute_path_as_a_name(case, world):
    case.expect(case.p2e("base", "add", "/tmp/evil", "--path", world), 2, "invalid name '/tmp/evil'")


def test_name_with_a_slash(case):
    folder = case.work / "clips"
    folder.mkdir()
    hostile.video(folder / "a.mp4")
    (folder / "a.txt").write_text("melting\n", encoding="utf-8")
    case.expect(case.p2e("curate", "add", folder, "--effect", "melt/../../x"), 2, "invalid effect name")


@pytest.mark.parametrize("ref", ["lora:../../etc/passwd", "/etc/passwd", "x' OR '1'='1", "lora:%", "____"])
def test_hostile_registry_references(case, ref):
    case.expect(case.p2e("show", ref), 2, "not a registry id or name")
    case.expect(case.p2e("rm", ref, "--force"), 2, "not a registry id or name")


def test_output_in_a_missing_folder(case):
    case.expect(case.p2e("recipe", "cp", "lora", "no/such/dir/lora.yaml"), 2, "output folder no/such/dir does not exist")
    case.expect(case.p2e("effects", "photo", "coffee", "-o", "nowhere/coffee.png"), 2, "does not exist")
    assert not (case.work / "no").exists() and not (case.work / "nowhere").exists()


def test_output_that_is_a_directory(case):
    (case.work / "taken.png").mkdir()
    case.expect(case.p2e("effects", "photo", "coffee", "-o", "taken.png"), 2, "is a directory")
    lora = hostile.good_lora(case.work / "melt.safetensors")
    (case.work / "out.safetensors").mkdir()
    case.expect(case.p2e("lora", "convert", lora, "--to", "wan", "-o", "out.safetensors"), 2, "is a directory")
    assert not any((case.work / "out.safetensors").iterdir())


def test_home_that_is_a_file(case):
    home = case.root / "home-file"
    home.write_text("not a folder\n")
    case.expect(case.p2e("ls", home=home), 2, "cannot open the registry")


def test_index_that_is_not_a_database(case):
    home = case.new_home()  # not seeded: its index is garbage on purpose
    home.mkdir()
    (home / "index.sqlite").write_bytes(b"this is not an sqlite database" * 100)
    case.expect(case.p2e("ls", home=home), 2, "cannot open the registry")


def read_only(case, path):
    """Make `path` read-only for p2e, also when the tests run as root (a read-only bind mount)."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        case.restores.append(lambda: os.chmod(path, 0o755))
        return
    mounted = subprocess.run(["mount", "--bind", path, path], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount as root: {mounted.stderr.decode().strip()}")
    case.restores.append(lambda: subprocess.run(["umount", "-l", path], check=True))
    subprocess.run(["mount", "-o", "remount,bind,ro", path, path], check=True)


def test_read_only_home(case):
    read_only(case, case.home)
    case.expect(case.p2e("ls"), 2, "cannot open the registry", "writable")
    case.expect(case.p2e("curate", "synth", "--effects", "melt", "-n", "1", "--frames", "5", "--size", "16"), 2,
                "cannot open the registry", "writable")


def test_output_into_a_read_only_folder(case, micro):
    folder = case.work / "locked"
    folder.mkdir()
    read_only(case, folder)
    case.expect(case.p2e("effects", "photo", "coffee", "-o", folder / "coffee.png"), 1, "cannot write", "coffee.png")
    images = case.work / "images"
    images.mkdir()
    hostile.png(images / "cat.png")
    case.expect(case.p2e("render", "--batch", images, "--base", micro, "-o", folder / "renders"), 1, "cannot write")
    case.expect(case.p2e("curate", "synth", "--effects", "melt", "-n", "1", "--frames", "5", "--size", "16"), 0)
    case.expect(case.p2e("curate", "export", "melt", "-o", folder / "clips"), 1, "cannot", "clips")


def test_base_with_absurd_sizes_in_its_config(case, world):
    import json
    import shutil

    folder = case.work / "huge"
    shutil.copytree(world, folder, symlinks=True)
    config = folder / "transformer" / "config.json"
    config.unlink()  # the copy may share the file with the world: write a new one
    data = json.loads((world / "transformer" / "config.json").read_text())
    config.write_text(json.dumps({**data, "num_layers": 1_000_000_000, "ffn_dim": -3}))
    case.expect(case.p2e("base", "add", "huge", "--path", folder), 2, "sizes out of range", "num_layers=1000000000")
