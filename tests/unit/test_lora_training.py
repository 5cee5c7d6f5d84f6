"""The LoRA trainer on a real (micro) Wan world: batched == one by one, exact resume, CLI output."""

import pytest
import torch

from p2e_cli.lora_jobs import effect_set, encode_all, gather
from p2e_cli.lora_training import train_group
from p2e_cli.recipes import load_recipe
from p2e_cli.registry import open_registry
from p2e_cli.wan import base_settings, layer_table, load_pipeline
from tests.wan_helpers import accelerate_launch

OVERRIDES = ["steps=4", "batch_size=2", "clips_per_effect=3", "val_clips=1", "validate_every=2",
             "checkpoint_every=2", "rank=2", "alpha=2.0", "base=micro"]


@pytest.fixture
def setup(micro_base):
    reg = open_registry()
    cfg = load_recipe("lora", OVERRIDES)
    pipe = load_pipeline(micro_base)
    data = [gather(reg, e, cfg, base_settings(micro_base)) for e in ("melt", "invert")]
    encode_all(reg, micro_base, pipe, data)
    sets = [effect_set(reg, micro_base, d, None) for d in data]
    names = [layer.name for layer in layer_table(pipe.transformer, cfg.targets)]
    return pipe, names, sets, cfg


def run(pipe, names, sets, cfg, **kw):
    return train_group(pipe.transformer, names, sets, cfg, shift=3.0, **kw)


def assert_same_factors(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for name in a:
        for x, y in zip(a[name], b[name]):
            torch.testing.assert_close(x, y, atol=atol, rtol=0)


def test_batched_training_equals_one_by_one(setup):
    pipe, names, sets, cfg = setup
    together = run(pipe, names, sets, cfg)
    alone = [run(pipe, names, [s], cfg) for s in sets]
    for i, single in enumerate(alone):
        assert_same_factors(together.factors[i], single.factors[0], atol=1e-5)
        assert together.base_loss[i] == pytest.approx(single.base_loss[0], rel=1e-5)
    assert len(together.history) == 2 * 3 and all(h["val"] > 0 for h in together.history)  # steps 0, 2, 4
    assert [h["val"] for h in together.history if h["step"] == 0] == together.base_loss  # a fresh LoRA is the base


def test_a_run_from_an_init_starts_its_curve_at_the_init(setup):
    """Fine-tuning: step 0 of the history is the init's validation loss (here: a trained LoRA's final one)."""
    import dataclasses

    pipe, names, sets, cfg = setup
    first = run(pipe, names, sets[:1], cfg)
    again = run(pipe, names, [dataclasses.replace(sets[0], init=first.factors[0], init_alpha=cfg.alpha)], cfg)
    start = again.history[0]
    assert start["step"] == 0 and start["val"] == pytest.approx(first.final_loss(0), rel=1e-5)
    assert start["val"] < again.base_loss[0]


def test_resume_after_interrupt_equals_uninterrupted(setup):
    pipe, names, sets, cfg = setup
    straight = run(pipe, names, sets, cfg)
    saved = {}

    def checkpoint(tensors, optimizer, meta):
        saved.update(tensors={k: v.clone() for k, v in tensors.items()}, optimizer=optimizer, meta=meta)
        raise KeyboardInterrupt  # killed right after the first checkpoint

    with pytest.raises(KeyboardInterrupt):
        run(pipe, names, sets, cfg, checkpoint=checkpoint)
    assert saved["meta"]["step"] == 2
    import copy

    resumed = run(pipe, names, sets, cfg, resume=copy.deepcopy(saved))
    for a, b in zip(straight.factors, resumed.factors):
        assert_same_factors(a, b)
    assert straight.history == resumed.history


def test_train_lora_cli_registers_a_reference_lora_with_lineage(cli, micro_base, tmp_path):
    from p2e_cli.lora_io import read_lora

    out = tmp_path / "melt.safetensors"
    result = cli("train", "lora", "melt", "--base", "micro", "-o", str(out), "--preview-every", "2",
                 *[f"--set={o}" for o in OVERRIDES])
    assert result.code == 0, result.stderr
    assert "dataset melt: 3 training clips, 1 validation clips" in result.stderr
    lora = open_registry().ls("lora", "reference")
    assert len(lora) == 1 and lora[0].data["effect"] == "melt"
    assert read_lora(out).ranks == [2]
    from tests.wan_helpers import lineage_kinds

    assert {"run", "clip", "effect", "base"} <= lineage_kinds(cli, lora[0].id)

    from p2e_cli.video import read_image

    run = open_registry().get(lora[0].data["run"])
    assert run.data["previews"] == {"melt": "preview-4"} and {"preview-2", "preview-4"} <= set(run.files)
    sheet = read_image(open_registry().path(run.files["preview-4"]))
    assert sheet.shape[0] > 2 * 16 and sheet.std() > 0  # two rows (truth, LoRA) of real frames


def test_two_process_accelerate_launch_trains_the_same_lora_as_one_process(cli, micro_base, home):
    """`accelerate launch` (2 processes, gloo on CPU) splits each step's batch over the processes
    and averages gradients: the LoRA equals the single-process one up to float rounding."""
    from p2e_cli.lora_io import read_lora

    overrides = [f"--set={o}" for o in OVERRIDES]
    assert cli("train", "lora", "melt", "--name", "single", *overrides).code == 0
    launched = accelerate_launch(home, "train", "lora", "melt", "--name", "double", *overrides)
    assert launched.returncode == 0, launched.stderr[-3000:]
    reg = open_registry()
    double = reg.find("lora", "double")
    assert reg.get(double.data["run"]).data["processes"] == 2
    assert len(reg.ls("lora", "reference")) == 2  # one record per run, not one per process
    a = read_lora(reg.path(reg.find("lora", "single").files["lora"]))
    b = read_lora(reg.path(double.files["lora"]))
    for name, layer in a.layers.items():
        torch.testing.assert_close(b.layers[name].B, layer.B, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(b.layers[name].A, layer.A, atol=1e-5, rtol=1e-4)


def test_a_library_starts_every_effect_from_the_same_adapter(setup):
    """init: shared (default) gives every effect's adapter the same A, so a library's updates share
    a basis; init: per-effect seeds A by the effect's name too."""
    import dataclasses

    pipe, names, sets, cfg = setup
    frozen = dataclasses.replace(cfg, steps=1, optim=dataclasses.replace(cfg.optim, lr=0.0))
    shared = run(pipe, names, sets, frozen).factors
    own = run(pipe, names, sets, dataclasses.replace(frozen, init="per-effect")).factors
    for name in names:  # factors are (A, B)
        assert torch.equal(shared[0][name][0], shared[1][name][0]) and shared[0][name][0].abs().sum() > 0
        assert not torch.equal(own[0][name][0], own[1][name][0])
