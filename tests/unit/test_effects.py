"""The procedural effect library: counts, split, identity at t=0, distinctness, determinism, jitter."""

import numpy as np
import pytest

from p2e_cli import effects
from p2e_cli.effects import EFFECTS, FAMILIES, get_effect, render, sample_params
from p2e_cli.errors import P2EError
from p2e_cli.photos import load_photo

PHOTO = "astronaut"
MARGIN = 0.04  # RMS difference in [0, 1] units (about 10/255) over the whole clip


@pytest.fixture(scope="module")
def clips():
    image = load_photo(PHOTO, 64)
    return image, {e.name: render(e, image, 17) for e in EFFECTS}


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float32) / 255 - b.astype(np.float32) / 255) ** 2)))


def test_library_size_and_split():
    assert len(EFFECTS) >= 70
    heldout = effects.effects("heldout")
    assert len(heldout) >= 14
    assert {e.holdout for e in heldout} == {"value", "composition"}
    assert sum(e.holdout == "composition" for e in heldout) >= 5
    assert len({e.name for e in EFFECTS}) == len(EFFECTS)
    assert sorted(effects.effect_names("train") + effects.effect_names("heldout")) == sorted(effects.effect_names())


def test_every_effect_is_well_formed():
    all_train_prompts = [p for e in EFFECTS for p in e.prompts]
    for e in EFFECTS:
        assert e.split in ("train", "heldout"), e.name
        assert len(e.prompts) >= 5 and len(e.heldout_prompts) >= 1, e.name
        assert not set(e.prompts) & set(e.heldout_prompts), e.name
        assert all(f in FAMILIES for f in e.families), e.name
        assert len(set(e.families)) == len(e.families), e.name
        for key, (low, high) in e.jitter.items():
            assert low <= high, (e.name, key)
            *path, leaf = key.split(".")
            target = e.params
            for part in path:
                target = target[part]
            assert low <= target[leaf] <= high, f"{e.name}: {key}={target[leaf]} outside its jitter range"
    assert len(set(all_train_prompts)) == len(all_train_prompts), "training paraphrases must be unique"
    held = {p for e in EFFECTS for p in e.heldout_prompts}
    assert not held & set(all_train_prompts), "a held-out paraphrase is used for training elsewhere"


def test_extra_paraphrases_are_train_only_and_new():
    """The hypernetwork's extra paraphrases: 6 per train effect, none for held-out effects, none
    repeating any effect's prompts or held-out paraphrases."""
    known = {p.lower() for e in EFFECTS for p in e.prompts + e.heldout_prompts}
    extras = [p for e in EFFECTS for p in effects.extra_prompts(e)]
    for e in EFFECTS:
        assert len(effects.extra_prompts(e)) == (6 if e.split == "train" else 0), e.name
    assert len({p.lower() for p in extras}) == len(extras) and not {p.lower() for p in extras} & known


def reachable_by_jitter(held, trained) -> bool:
    """Could `curate synth` jittering `trained` produce `held`'s exact params?"""
    for key, value in held.params.items():
        if key in trained.jitter:
            low, high = trained.jitter[key]
            if not low <= value <= high:
                return False
        elif value != trained.params[key]:
            return False
    return True


def test_heldout_values_lie_outside_every_trained_jitter_range():
    trained = effects.effects("train")
    for e in effects.effects("heldout"):
        if e.holdout == "value":
            same_family = [t for t in trained if t.family == e.family]
            assert same_family, e.name
            for t in same_family:
                assert not reachable_by_jitter(e, t), f"held-out {e.name} is reachable by jittering trained {t.name}"


def test_heldout_compositions_pair_trained_effects_no_trained_effect_pairs():
    trained_pairs = {frozenset(e.families) for e in effects.effects("train") if len(e.families) > 1}
    trained_single = {e.family for e in effects.effects("train") if len(e.families) == 1}
    for e in effects.effects("heldout"):
        if e.holdout == "composition":
            assert len(e.families) == 2 and set(e.families) <= trained_single, e.name
            assert frozenset(e.families) not in trained_pairs, e.name


@pytest.mark.parametrize("size", [32, (24, 40)])
def test_frame_zero_is_the_photo_and_t0_is_identity(size):
    image = load_photo("chelsea", size)
    source = image.astype(np.float32) / 255
    for e in EFFECTS:
        assert np.array_equal(render(e, image, 5)[0], image), e.name
        at0 = np.clip(effects.frame(e, source, 0.0), 0, 1)
        assert np.abs(at0 - source).max() < 1.5 / 255, f"{e.name} is not the identity at t=0"


def test_every_effect_differs_from_identity_and_from_every_other(clips):
    image, rendered = clips
    identity = np.broadcast_to(image, (17, *image.shape))
    for name, clip in rendered.items():
        assert clip.shape == (17, 64, 64, 3) and clip.dtype == np.uint8
        assert rms(clip, identity) > MARGIN, f"{name} is too close to the identity clip"
    # compared after 2x2 average pooling: pooling only shrinks differences, so this is stricter
    names = list(rendered)
    pooled = np.stack([rendered[n] for n in names]).reshape(len(names), 17, 32, 2, 32, 2, 3)
    pooled = pooled.astype(np.float32).mean(axis=(3, 5)).reshape(len(names), -1) / 255
    for i, name in enumerate(names[:-1]):
        dist = np.sqrt(((pooled[i + 1:] - pooled[i]) ** 2).mean(axis=1))
        j = int(np.argmin(dist))
        assert dist[j] > MARGIN, f"{name} and {names[i + 1 + j]} look alike (RMS {dist[j]:.3f})"


def test_render_is_deterministic_and_fast(clips):
    import time

    image, rendered = clips
    for name in ("dissolve", "glitch", "shatter", "rain", "shake-glitch"):
        assert np.array_equal(render(name, image, 17), rendered[name]), name
    start = time.perf_counter()
    render("melt", image, 17)
    assert time.perf_counter() - start < 0.5


def test_sample_params_jitters_within_ranges_deterministically():
    e = get_effect("spin-fade-black")
    a, b = sample_params(e, 3), sample_params(e, np.random.default_rng(3))
    assert a == b and a != e.params
    assert -1.15 <= a["spin"]["turns"] <= -0.85 and 0.0 <= a["fade"]["level"] <= 0.06
    assert e.params["spin"]["turns"] == -1.0, "sampling must not mutate the effect"
    seeds = {sample_params("dissolve", s)["seed"] for s in range(5)}
    assert len(seeds) == 5 and all(isinstance(s, int) for s in seeds)
    image = load_photo(PHOTO, 32)
    assert not np.array_equal(render("dissolve", image, 5, sample_params("dissolve", 1)),
                              render("dissolve", image, 5, sample_params("dissolve", 2)))


def test_lookup_errors_are_helpful():
    with pytest.raises(P2EError, match="unknown effect") as info:
        get_effect("melts")
    assert "melt" in info.value.hint
    with pytest.raises(P2EError):
        effects.effects(split="val")
    with pytest.raises(P2EError):
        effects.effects(family="nosuch")
    with pytest.raises(P2EError):
        render("melt", np.zeros((8, 8), np.uint8))
    assert effects.effect_names(family="spin")[:2] == ["spin-cw", "spin-ccw"]
    assert "spin-fade-black" in effects.effect_names(family="fade")
