"""Metrics shared by evaluation and training: ΔW agreement against dense matrices, recovery R."""

import pytest
import torch

from tests.wan_helpers import one_thread  # noqa: F401

from p2e_cli.metrics import delta_agreement


def test_delta_agreement_matches_the_dense_nmse_and_cosine():
    g = torch.Generator().manual_seed(0)
    shapes = {"q": (6, 5), "ffn": (9, 4)}
    pred = {n: (torch.randn(o, 3, generator=g), torch.randn(3, i, generator=g)) for n, (o, i) in shapes.items()}
    ref = {n: (torch.randn(o, 2, generator=g), torch.randn(2, i, generator=g)) for n, (o, i) in shapes.items()}
    dp = torch.cat([(b.double() @ a.double()).flatten() for b, a in pred.values()])
    dr = torch.cat([(b.double() @ a.double()).flatten() for b, a in ref.values()])
    got = delta_agreement(pred, ref)
    assert abs(got["nmse"] - float((dp - dr).pow(2).sum() / dr.pow(2).sum())) < 1e-9
    assert abs(got["cosine"] - float(dp @ dr / (dp.norm() * dr.norm()))) < 1e-9
    same = delta_agreement(ref, ref)
    assert abs(same["nmse"]) < 1e-9 and abs(same["cosine"] - 1) < 1e-9


def test_delta_agreement_per_block_matches_dense():
    g = torch.Generator().manual_seed(1)
    shapes = {"blocks.0.attn1.to_q": (6, 5), "blocks.0.ffn.net.2": (5, 9), "blocks.10.attn2.to_k": (6, 5),
              "blocks.2.attn1.to_q": (6, 5)}
    pred = {n: (torch.randn(o, 3, generator=g), torch.randn(3, i, generator=g)) for n, (o, i) in shapes.items()}
    ref = {n: (torch.randn(o, 2, generator=g), torch.randn(2, i, generator=g)) for n, (o, i) in shapes.items()}
    got = delta_agreement(pred, ref)["nmse_blocks"]
    assert list(got) == ["blocks.0", "blocks.2", "blocks.10"]  # in block order
    for block, value in got.items():
        names = [n for n in shapes if n.startswith(block + ".")]
        dp = torch.cat([(pred[n][0].double() @ pred[n][1].double()).flatten() for n in names])
        dr = torch.cat([(ref[n][0].double() @ ref[n][1].double()).flatten() for n in names])
        assert abs(value - float((dp - dr).pow(2).sum() / dr.pow(2).sum())) < 1e-9


def test_a_recorded_recipe_matches_once_new_schema_keys_take_their_defaults():
    """eval ablations reuses a variant trained before the schema grew a key (at its default)."""
    from p2e_cli.ablations import same_recipe
    from p2e_cli.recipes import load_recipe, to_dict

    cfg = load_recipe("base", ["steps=500"], kind="hypernet")
    stored = to_dict(cfg)
    stored.pop("shrink_rank")
    stored.pop("validation_names")  # as an older run recorded it
    assert same_recipe(stored, cfg)
    assert not same_recipe({**stored, "steps": 400}, cfg)
    assert not same_recipe({**stored, "target": "nonsense"}, cfg) and not same_recipe(None, cfg)


def test_recovery_is_one_at_the_reference_and_zero_at_the_base():
    from p2e_cli.metrics import recovery

    assert recovery(1.0, 0.2, 0.2) == 1.0 and recovery(1.0, 1.0, 0.2) == 0.0
    assert recovery(1.0, 0.6, 0.2) == pytest.approx(0.5) and recovery(1.0, 1.4, 0.2) == pytest.approx(-0.5)
    assert recovery(1.0, 0.5, 1.0) is None and recovery(1.0, 0.5, 1.2) is None  # no gap to recover


def test_pooled_recovery_weighs_effects_by_their_loss_gap():
    from p2e_cli.metrics import pooled_recovery as _pooled_recovery

    rows = [{"L0": 1.0, "L_ref": 0.2, "L_pred": 0.4},  # gap 0.8, R 0.75
            {"L0": 0.5, "L_ref": 0.48, "L_pred": 0.52}]  # gap 0.02, R -1: noise on a tiny gap
    assert abs(_pooled_recovery(rows) - (0.6 - 0.02) / 0.82) < 1e-12
    no_gap = {"L0": 0.5, "L_ref": 0.6, "L_pred": 0.4}  # the reference is worse than the base: no R, left out
    assert _pooled_recovery(rows + [no_gap]) == _pooled_recovery(rows)
    assert _pooled_recovery([no_gap]) is None


class _FixedGenerator:
    """A stand-in hypernetwork for the evaluation: writes `table[prompt]` ({layer: (B, A)}), zeros for
    any other prompt."""

    precision = "float32"
    meta = {"library": []}

    def __init__(self, table, zeros, rank):
        self.table, self.zeros, self.rank = table, zeros, rank

    def __call__(self, prompts):
        return [self.table.get(p, self.zeros) for p in prompts]


@pytest.mark.usefixtures("one_thread")
def test_recovery_from_the_real_evaluation_is_one_for_the_reference_and_zero_for_a_zero_lora(cli, micro_base, tmp_path):
    """`p2e eval run`'s own code path (evaluation.evaluate): a 'prediction' that is the reference LoRA
    recovers R = 1 and beats the misaligned control; a zero LoRA recovers R = 0."""
    from p2e_cli import effects as fx
    from p2e_cli.evaluation import EvalOptions, eval_prompt, evaluate
    from p2e_cli.lora_io import LoraLayer, read_lora, write_lora
    from p2e_cli.registry import open_registry
    from p2e_cli.wan import base_config, layer_table

    effects = ["melt", "slide-left"]  # slide-left's prompt has an opposite ("... drifts right ...")
    table = layer_table(base_config(micro_base))
    for k, effect in enumerate(effects):
        g = torch.Generator().manual_seed(k)
        path = write_lora(tmp_path / f"{effect}.safetensors",
                          {l.name: LoraLayer(torch.randn(2, l.in_features, generator=g) * 0.3,
                                             torch.randn(l.out_features, 2, generator=g) * 0.3, 2.0) for l in table})
        assert cli("lora", "import", path, "--name", effect, "--effect", effect, "--kind", "reference", "--base", "micro").code == 0
    reg = open_registry()
    refs = {e: read_lora(reg.path(reg.get(e, "lora").files["lora"])) for e in effects}
    scaled = {e: {n: (l.B * l.scale, l.A) for n, l in lora.layers.items()} for e, lora in refs.items()}
    zeros = {n: (torch.zeros_like(b), torch.zeros_like(a)) for n, (b, a) in scaled["melt"].items()}
    oracle = _FixedGenerator({eval_prompt(fx.get_effect(e)): scaled[e] for e in effects}, zeros, 2)
    options = EvalOptions(val_clips=1, render=False)
    rows = evaluate(reg, micro_base, effects, oracle, options)["effects"]
    for row in rows:
        assert row["L0"] > row["L_ref"], row  # the references change the loss: R is defined
        assert row["recovery"] == pytest.approx(1.0, abs=1e-6) and row["nmse"] == pytest.approx(0.0, abs=1e-9)
        assert row["beats_misaligned"]
    assert [row.get("beats_opposite") for row in rows] == [None, True]  # melt's prompt has no direction word
    rows = evaluate(reg, micro_base, effects, _FixedGenerator({}, zeros, 2), options)["effects"]
    assert [row["recovery"] for row in rows] == [pytest.approx(0.0, abs=1e-6)] * 2


def test_opposite_prompts_swap_direction_sense_and_colour_words():
    from p2e_cli.effects.opposites import opposite_prompt

    assert opposite_prompt("the image spins clockwise") == "the image spins counter-clockwise"
    assert opposite_prompt("the frame twirls in the direction of a clock's hands") == "the frame twirls anticlockwise"
    assert opposite_prompt("zooming in quickly") == "zooming out quickly"
    assert opposite_prompt("the content drifts left, then up") == "the content drifts right, then down"
    assert opposite_prompt("everything turns orange") == "everything turns blue"
    # no direction word, or one that means none: no opposite
    assert opposite_prompt("melting into liquid") is None and opposite_prompt("waving up and down") is None
    assert opposite_prompt("it somersaults to hang upside down") is None
