"""Hostile recipes: only safe YAML is loaded, and every mistake is named by its key path."""

from tests.reliability import hostile


def validate(case, text):
    return case.p2e("recipe", "validate", hostile.yaml_file(case.work / "mine.yaml", text), timeout=30)


def test_unsafe_yaml_tag_is_not_executed(case):
    marker = case.root / "pwned"
    run = validate(case, f'kind: lora\nrank: !!python/object/apply:os.system ["touch {marker}"]\n')
    case.expect(run, 2, "YAML tag p2e does not load")
    assert not marker.exists()


def test_wrong_types(case):
    run = validate(case, "kind: lora\nrank: eight\ntargets: self_q\noptim:\n  lr: fast\n")
    case.expect(run, 2, "3 error(s)", "rank: expected int, got 'eight'", "targets: expected list of str",
                "optim.lr: expected float, got 'fast'")


def test_unknown_keys(case):
    case.expect(validate(case, "kind: lora\nrnak: 8\noptim:\n  learning_rate: 1.0e-4\n"), 2,
                "rnak: unknown key", "optim.learning_rate: unknown key")


def test_negative_steps(case):
    case.expect(validate(case, "kind: lora\nsteps: -5\n"), 2, "steps: must be >= 1, got -5")


def test_huge_values(case):
    run = validate(case, "kind: lora\nsteps: 1000000000000000000000000000000\nrank: .inf\nalpha: 1.0e+400\n")
    case.expect(run, 2, "steps: must be <= 10000000", "rank: expected int", "alpha: expected a finite number")


def test_overrides_from_the_command_line(case):
    run = case.p2e("recipe", "show", "lora", "--set", "steps=-1", "--set", "optim.lr=1e999999", "--set", "seed=[1")
    case.expect(run, 2, "bad value in --set 'seed=[1'")
    run = case.p2e("recipe", "show", "lora", "--set", "steps=-1", "--set", "optim.lr=fast")
    case.expect(run, 2, "steps: must be >= 1", "optim.lr: expected float")


def test_billion_laughs(case):
    case.expect(validate(case, hostile.billion_laughs()), 2, "rank: expected int")


def test_not_a_text_file(case):
    path = case.work / "mine.yaml"
    path.write_bytes(bytes(range(256)) * 8)
    case.expect(case.p2e("recipe", "validate", path), 2, "not UTF-8 text")


def test_not_a_mapping(case):
    case.expect(validate(case, "- kind\n- lora\n"), 2, "expected a mapping of keys at the top level")
