import subprocess
import sys

GROUPS = ["curate", "train", "canon", "generate", "finetune", "render", "base", "lora", "effects", "world",
          "eval", "recipe", "ls", "show", "rm", "doctor"]


def test_ls_json_on_empty_home_prints_empty_list(cli):
    result = cli("ls", "--json")
    assert result.code == 0 and result.json() == []


def test_show_path_traversal_is_bad_input_without_traceback(p2e):
    proc = p2e("show", "../../etc/passwd")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "not a registry id or name" in proc.stderr
    assert proc.stdout == ""


def test_help_lists_every_group(p2e):
    proc = p2e("--help")
    assert proc.returncode == 0
    for group in GROUPS:
        assert f" {group} " in proc.stdout, group


def test_every_leaf_command_has_help_with_an_example():
    import typer

    from p2e_cli.cli import app

    def leaves(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                yield from leaves(sub, path + [name])
        else:
            yield path, command

    found = list(leaves(typer.main.get_command(app), []))
    assert len(found) > 20
    for path, command in found:
        assert command.help and "Example: p2e" in command.help, " ".join(path)


def test_global_options_work_after_the_subcommand(cli, home):
    assert cli("ls", "--json").json() == []
    assert cli("--json", "ls").json() == []
    other = home.parent / "other"
    assert cli("ls", "--home", str(other), "--json").code == 0
    assert (other / "index.sqlite").exists()


def test_show_and_rm_of_records(cli):
    from p2e_cli.registry import open_registry

    reg = open_registry()
    parent = reg.add("effect", name="melt")
    child = reg.add("lora", name="melt-ref", subkind="reference", parents=[parent.id])
    shown = cli("show", "lora:melt-ref", "--json").json()
    assert shown["lineage"]["parents"][0]["id"] == parent.id
    refused = cli("rm", "melt")
    assert refused.code == 2 and "dependent" in refused.stderr
    assert cli("rm", child.id).code == 0
    assert cli("rm", "melt").code == 0
    assert cli("ls", "--json").json() == []
    assert cli("doctor", "--json").json()["ok"]


def test_recipe_commands(cli, tmp_path):
    assert "lora" in [r["name"] for r in cli("recipe", "ls", "--json").json()]
    assert cli("recipe", "show", "lora", "--json", "--set", "rank=4").json()["rank"] == 4
    dest = tmp_path / "mine.yaml"
    assert cli("recipe", "cp", "lora", str(dest)).code == 0
    assert cli("recipe", "validate", str(dest)).code == 0
    assert cli("recipe", "cp", "lora", str(dest)).code == 2
    dest.write_text(dest.read_text().replace("rank: 8", "rank: many"))
    bad = cli("recipe", "validate", str(dest))
    assert bad.code == 2 and "rank: expected int" in bad.stderr


def test_version(cli):
    from p2e_cli import __version__

    result = cli("--version")
    assert result.code == 0 and __version__ in result.stdout


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, p2e_cli.cli; print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_usage_is_exit_2(cli):
    assert cli("ls", "--no-such-option").code == 2
    assert cli("ls", "nokind").code == 2
