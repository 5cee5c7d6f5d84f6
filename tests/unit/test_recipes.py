import pytest

from p2e_cli.errors import P2EError
from p2e_cli.recipes import load_recipe, parse_recipe, shipped_recipes
from p2e_cli.schemas import LoraRecipe


def test_every_shipped_recipe_validates():
    assert shipped_recipes(), "no recipes are installed with the package"
    for name in shipped_recipes():
        load_recipe(name)


def test_three_mistakes_are_all_reported_by_key_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: lora\nrank: -3\noptim:\n  lr: fast\nbogus: 1\n")
    with pytest.raises(P2EError) as info:
        load_recipe(path)
    message = info.value.message
    assert "3 error(s)" in message
    assert "rank: must be >= 1, got -3" in message
    assert "optim.lr: expected float, got 'fast'" in message
    assert "bogus: unknown key" in message


def test_set_overrides_nested_keys_and_are_validated():
    config = load_recipe("lora", ["optim.lr=1e-4", "rank=16"])
    assert isinstance(config, LoraRecipe) and config.optim.lr == 1e-4 and config.rank == 16
    with pytest.raises(P2EError, match="steps: must be >= 1"):
        load_recipe("lora", ["steps=-5"])
    with pytest.raises(P2EError, match="bad --set"):
        load_recipe("lora", ["rank"])


def test_retired_keys_load_when_off_and_are_refused_when_on():
    """The text-side switches retired in session 19 (token_dropout, paraphrase_mix, model.prompt,
    model.anchors): a recipe or stored run config that has them off still loads; turning one on is an
    error that says why, not an unknown key."""
    on = ["token_dropout=0.2", "paraphrase_mix=0.5", "model.prompt=sentence", "model.anchors=true"]
    config = load_recipe("base", ["token_dropout=0.0", "paraphrase_mix=0", "model.prompt=tokens", "model.anchors=false"])
    assert config == load_recipe("base")
    with pytest.raises(P2EError) as info:
        load_recipe("base", on)
    assert "4 error(s)" in info.value.message and info.value.message.count("retired in session 19") == 4
    for key in ("token_dropout", "paraphrase_mix", "model.prompt", "model.anchors"):
        assert f"{key}: retired" in info.value.message


def test_unsafe_yaml_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("kind: lora\nrank: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(P2EError, match="YAML tag"):
        load_recipe(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("raw, fragment", [
    ([1, 2], "expected a mapping"),
    ({"kind": "nope"}, "kind: expected one of"),
    ({"kind": "lora", "steps": 10**12}, "steps: must be <="),
    ({"kind": "lora", "rank": True}, "rank: expected int"),
    ({"kind": "lora", "targets": "q"}, "targets: expected list"),
    ({"kind": "lora", "alpha": float("nan")}, "alpha: expected a finite number"),
])
def test_wrong_types_and_values(raw, fragment):
    with pytest.raises(P2EError, match=fragment):
        parse_recipe(raw)


def test_ints_are_accepted_for_floats():
    assert parse_recipe({"kind": "lora", "alpha": 4}).alpha == 4.0
