"""Issue 30's test of the shipped hypernetwork: for each train effect's unseen paraphrase, the LoRA it writes
must be nearer that effect's shipped reference than most other references are (ΔW retrieval, top-5 >= 0.9 of
the effects). Networks that write zeros, one LoRA for every prompt, or each prompt's neighbour's LoRA must fail
the same check; they are swapped in below on the real network's outputs."""

from __future__ import annotations

import json

import pytest
import torch

BAR = 0.9  # issue 30: retrieval top-5 >= 0.9 of train effects


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """(train effects, per-layer batched reference factors, the shipped generator, its LoRAs for each effect's two
    unseen paraphrases)."""
    from safetensors import safe_open

    from p2e_cli.effects import library as fx
    from p2e_cli.hypernet.store import Generator
    from p2e_cli.registry import Registry
    from p2e_cli.world.shipped import LIBRARY_FILE, LIBRARY_KEY, install_shipped, shipped_world

    base = install_shipped(Registry(tmp_path_factory.mktemp("home")), "tiny")
    source = shipped_world("tiny")
    generator = Generator(source / "hypernet.safetensors", base)
    with safe_open(str(source / LIBRARY_FILE), "pt") as f:
        shipped_effects = json.loads(f.metadata()[LIBRARY_KEY])
        effects = [e for e in fx.EFFECTS if e.split == "train" and e.name in shipped_effects]
        refs = [tuple(torch.stack([f.get_tensor(f"{e.name}/{layer}.{side}").float() for e in effects])
                      for side in "BA") for layer in generator.names]
    unseen = [generator([e.heldout_prompts[which] for e in effects]) for which in (0, 1)]
    return effects, refs, generator, unseen


def top5(outputs: list[dict], refs, names: list[str]) -> float:
    """The share of effects whose own reference is among the 5 nearest to their prediction (ΔW NMSE)."""
    from p2e_cli.metrics import delta_retrieval_ranks

    pred = [tuple(torch.stack([o[layer][side] for o in outputs]) for side in (0, 1)) for layer in names]
    return float((delta_retrieval_ranks(pred, refs) <= 5).float().mean())


def test_the_check_fails_networks_that_ignore_or_misplace_the_prompt(shipped):
    """Outputs a bad network would write, shaped like the shipped network's: all below the bar, and far below
    what the shipped network reaches -- so the check below measures prompt specificity, not luck."""
    effects, refs, generator, (real, _) = shipped
    zeros = [{k: (torch.zeros_like(b), torch.zeros_like(a)) for k, (b, a) in o.items()} for o in real]
    blind = generator([effects[0].heldout_prompts[0]] * len(effects))  # one LoRA for every prompt
    neighbour = real[1:] + real[:1]  # each prompt gets the next effect's LoRA
    bad = {name: top5(out, refs, generator.names) for name, out in
           (("zeros", zeros), ("prompt-blind", blind), ("neighbour", neighbour))}
    assert all(v < 0.5 for v in bad.values()), bad
    assert top5(real, refs, generator.names) > max(bad.values()) + 0.3, bad


@pytest.mark.xfail(strict=True, reason="the shipped hypernetwork (session 9, the old world) reaches top-5 0.59 / "
                                       "0.60 on the two unseen paraphrases; issue 30 re-ships it on issue 29's world")
def test_shipped_hypernet_retrieves_each_train_effect_from_an_unseen_paraphrase(shipped):
    _, refs, generator, unseen = shipped
    for which, outputs in enumerate(unseen):
        assert top5(outputs, refs, generator.names) >= BAR, f"held-out paraphrase {which}"
