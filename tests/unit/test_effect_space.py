"""The effect space (issue 30): thousands of distinct training effects with exact ground truth,
and the held-out set kept out of it, checked against the library's own held-out effects."""

import math
import re

import numpy as np
import pytest

from p2e_cli import effects as fx
from p2e_cli.effects.space import BANNED_WORDS, FAMILY_SAMPLERS, MARGINS, exclusion, sample_effect

SAMPLES = 3000


@pytest.fixture(scope="module")
def samples():
    return [sample_effect(seed) for seed in range(SAMPLES)]


def _parts(effect):
    return [(effect.family, effect.params)] if "+" not in effect.family else list(effect.params.items())


def _distance(family, params, heldout):
    """How far a sampled family's params lie from a held-out value effect's, in MARGINS' units."""
    if family == "hue":
        return abs((params["hue"] - heldout["hue"] + 180) % 360 - 180)
    if family == "spin":
        return abs(params["turns"] - heldout["turns"])
    if family == "zoom":
        return abs(math.log(params["factor"]) - math.log(heldout["factor"]))
    if family == "fade":
        return abs(params["level"] - heldout["level"])
    if family == "slide":
        a, b = math.atan2(-params["dy"], params["dx"]), math.atan2(-heldout["dy"], heldout["dx"])
        return abs((a - b + math.pi) % (2 * math.pi) - math.pi)
    raise AssertionError(f"no distance for held-out family {family}")


def violations(effect, validation=()):
    """Every way `effect` leaks the held-out set (and the `validation` effects, kept out the same way)."""
    found = []
    kept_out = [e for e in fx.EFFECTS if e.split == "heldout"] + list(validation)
    values = [e for e in kept_out if "+" not in e.family and e.family in FAMILY_SAMPLERS]
    for family, params in _parts(effect):
        for h in values:
            if h.family == family and _distance(family, params, h.params) < MARGINS[family]:
                found.append(f"{family} {params} within {MARGINS[family]} of {h.name}")
    families = set(effect.families)
    for h in kept_out:
        if "+" in h.family and set(h.families) <= families:
            found.append(f"composes {h.name}'s families")
    forbidden = {" ".join(p.lower().split()) for e in fx.EFFECTS for p in e.heldout_prompts}
    forbidden |= {" ".join(p.lower().split()) for e in kept_out for p in e.prompts}
    for prompt in effect.prompts:
        if " ".join(prompt.lower().split()) in forbidden:
            found.append(f"held-out prompt {prompt!r}")
        if set(re.findall(r"[a-z]+", prompt.lower())) & BANNED_WORDS:
            found.append(f"banned word in {prompt!r}")
    return found


def test_thousands_of_distinct_effects_with_prompts_that_describe_them(samples):
    assert sample_effect(11) == sample_effect(11)  # seeded
    keys = {(e.family, repr(e.params)) for e in samples}
    assert len(keys) >= 0.98 * SAMPLES  # one-parameter families repeat a rounded value now and then
    assert len({e.family for e in samples}) > 60  # single families and many compositions
    compositions = [e for e in samples if "+" in e.family]
    assert 0.35 < len(compositions) / SAMPLES < 0.65 and any(len(e.families) == 3 for e in compositions)
    assert all(len(e.prompts) == 5 and len(set(e.prompts)) == 5 for e in samples)
    spins = [e for e in samples if e.family == "spin"]
    for e in spins:  # the words follow the parameters
        clockwise = e.params["turns"] < 0
        assert all(("clockwise" in p and "counter" not in p and "anti" not in p) == clockwise for p in e.prompts), e


def test_no_sample_leaks_the_heldout_set(samples):
    leaks = [(e.name, v) for e in samples for v in violations(e)]
    assert leaks == []


# recipes/sweep-tiny.yaml's validation effects: compositions, in-between hues, speeds, a direction
VALIDATION = ["spin-ccw-blue", "zoom-in-fade-white", "ripple-invert", "hue-cyan", "hue-magenta", "spin-cw-slow",
              "spin-ccw-fast", "slide-down"]


def test_a_runs_validation_effects_are_kept_out_like_the_heldout_ones():
    """With a run's validation effects named, no sample comes near them either (so a sweep measured on them
    sees what a held-out effect sees); the same seeds without them do come near."""
    named = [fx.get_effect(n) for n in VALIDATION]
    kept_out = exclusion(VALIDATION)
    assert [(seed, v) for seed in range(1500) for v in violations(sample_effect(seed, exclude=kept_out), named)] == []
    near = [seed for seed in range(1500) if violations(sample_effect(seed), named)]
    assert len(near) > 50


def test_the_leak_check_can_fail():
    """Planted leaks, one per rule, are each caught."""
    planted = [fx.Effect("x", "hue", {"hue": 35.0}, ("everything turns red",) * 5, ()),
               fx.Effect("x", "spin", {"turns": 0.45}, ("spinning",) * 5, ()),
               fx.Effect("x", "slide", {"dx": 0.3, "dy": -0.32}, ("sliding",) * 5, ()),
               fx.Effect("x", "spin+fade", {"spin": {"turns": -1.0}, "fade": {"level": 0.0}}, ("spinning",) * 5, ()),
               fx.Effect("x", "zoom", {"factor": 2.0}, ("it balloons outward",) * 5, ()),
               fx.Effect("x", "hue", {"hue": 200.0}, ("everything turns orange",) * 5, ())]
    assert all(violations(e) for e in planted)


def test_samples_render_exact_ground_truth(samples):
    from p2e_cli.photos import load_photo

    image = load_photo("chelsea", 32)
    for effect in samples[:40]:
        clip = fx.render(effect, image, 9)
        assert clip.shape == (9, 32, 32, 3) and np.array_equal(clip[0], image)
        assert np.abs(clip[-1].astype(int) - image).mean() > 1, effect  # it changes the picture
