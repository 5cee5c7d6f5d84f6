"""An effect space, not an effect list (issue 30): a seeded sampler of training effects with
continuous parameters, compositions and prompts that describe them.

    sample = sample_effect(seed)          # an `Effect` (split "train"), exact ground truth via render()
    sample.prompts                        # e.g. "the image spins slowly counter-clockwise while fading to white"

Each parametric family draws its parameters from wide ranges and words for them (direction, speed,
amount, colour). A sample is one family (half the time) or 2-3 of them at once, in the same
"a+b" form as the library's compositions. Its prompts come from sentence templates over those words.

The held-out set stays held out (tests/unit/test_effect_space.py):
- no sampled value lies within `MARGINS` of a held-out value effect's value (hue-orange's 30 degrees,
  spin-ccw-half's half turn, zoom-in-medium's x3.5, slide-up-right's direction, fade-grey's level),
  and the words that name those values ("orange", "half", "diagonal", ...) are never used;
- no held-out pair of families (spin+fade, melt+hue, ...) is composed;
- no prompt is a held-out prompt or paraphrase of any library effect.

Validation effects (train effects a settings sweep holds back) are kept out the same way when named:
`exclusion(names)` adds their values, pairs and prompts to the held-out ones, so a sweep measured on
them sees what a held-out effect sees: nothing sampled near it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from .library import EFFECTS, Effect

Words = dict[str, str]  # "verb": "spins slowly clockwise", "gerund": "spinning slowly clockwise"

# how far a sample must stay from an excluded effect's value, in the units of the family's COORDINATE
MARGINS = {"hue": 20.0, "spin": 0.2, "zoom": 0.2, "slide": math.radians(30), "fade": 0.2, "swirl": 0.2, "bulge": 0.2,
           "blur": 0.02, "shake": 0.02}
# each family's one compared value: hue degrees, signed turns, log zoom factor, slide direction (radians,
# up positive), fade level, signed swirl strength, signed bulge amount, blur sigma, shake amplitude
COORDINATES: dict[str, Callable[[dict[str, Any]], float]] = {
    "hue": lambda p: float(p["hue"]), "spin": lambda p: float(p["turns"]), "zoom": lambda p: math.log(p["factor"]),
    "slide": lambda p: math.atan2(-p["dy"], p["dx"]), "fade": lambda p: float(p["level"]),
    "swirl": lambda p: float(p["strength"]), "bulge": lambda p: float(p["amount"]), "blur": lambda p: float(p["sigma"]),
    "shake": lambda p: float(p["amplitude"])}
PERIODS = {"hue": 360.0, "slide": 2 * math.pi}  # circular coordinates
# words that name a held-out value: a sampled prompt never uses them
BANNED_WORDS = frozenset({"orange", "purple", "violet", "half", "halfway", "grey", "gray", "medium", "diagonal",
                          "diagonally", "vertical", "vertically"})
COMPOSITION_SHARE = 0.5


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _speed(rng, magnitude: float, bins: tuple[float, ...], words: list[list[str]]) -> str:
    return _pick(rng, words[int(np.searchsorted(bins, magnitude))])


def _spin(rng) -> tuple[dict[str, Any], Words]:
    turns = float(rng.uniform(0.2, 2.0)) * (1 if rng.random() < 0.5 else -1)
    speed = _speed(rng, abs(turns), (0.45, 1.0, 1.5), [["slowly", "gently"], ["steadily", ""], ["quickly", "fast"],
                                                        ["very fast", "rapidly"]])
    way = "clockwise" if turns < 0 else _pick(rng, ["counter-clockwise", "counterclockwise", "anticlockwise"])
    verb = _pick(rng, ["spins", "rotates", "turns"])
    gerund = {"spins": "spinning", "rotates": "rotating", "turns": "turning"}[verb]
    return {"turns": round(turns, 4)}, {"verb": f"{verb} {speed} {way}", "gerund": f"{gerund} {speed} {way}"}


def _zoom(rng) -> tuple[dict[str, Any], Words]:
    log_factor = float(rng.uniform(0.3, 1.5)) * (1 if rng.random() < 0.5 else -1)
    amount = _speed(rng, abs(log_factor), (0.6, 1.1), [["slightly", "a little"], ["", "steadily"],
                                                        ["far", "dramatically"]])
    if log_factor > 0:
        verb, gerund = _pick(rng, [("zooms in", "zooming in"), ("pushes in", "pushing in")])
    else:
        verb, gerund = _pick(rng, [("zooms out", "zooming out"), ("pulls back", "pulling back")])
    return {"factor": round(math.exp(log_factor), 4)}, {"verb": f"{verb} {amount}", "gerund": f"{gerund} {amount}"}


_COMPASS = [(0, "to the right"), (180, "to the left"), (90, "upward"), (270, "downward"),
            (135, "up and to the left"), (225, "down and to the left"), (315, "down and to the right")]


def _slide(rng) -> tuple[dict[str, Any], Words]:
    angle = float(rng.uniform(0, 2 * math.pi))
    distance = float(rng.uniform(0.2, 0.8))
    name = min(_COMPASS, key=lambda c: abs((math.degrees(angle) - c[0] + 180) % 360 - 180))[1]
    speed = _speed(rng, distance, (0.4, 0.65), [["slowly", "gently"], ["steadily", ""], ["quickly", "fast"]])
    verb, gerund = _pick(rng, [("slides", "sliding"), ("scrolls", "scrolling"), ("glides", "gliding")])
    params = {"dx": round(distance * math.cos(angle), 4), "dy": round(-distance * math.sin(angle), 4)}
    return params, {"verb": f"{verb} {speed} {name}", "gerund": f"{gerund} {speed} {name}"}


_COLOURS = [(0, "red"), (15, "scarlet"), (55, "yellow"), (90, "lime green"), (120, "green"), (150, "emerald"),
            (180, "cyan"), (200, "sky blue"), (225, "blue"), (245, "deep blue"), (300, "magenta"), (320, "pink"),
            (345, "crimson")]


def _hue(rng) -> tuple[dict[str, Any], Words]:
    hue = float(rng.uniform(0, 360))
    colour = min(_COLOURS, key=lambda c: abs((hue - c[0] + 180) % 360 - 180))[1]
    verb, gerund = _pick(rng, [(f"turns {colour}", f"turning {colour}"), (f"tints to {colour}", f"tinting to {colour}"),
                               (f"is washed in {colour}", f"washing into {colour}")])
    return {"hue": round(hue, 2)}, {"verb": verb, "gerund": gerund}


def _fade(rng) -> tuple[dict[str, Any], Words]:
    level = float(rng.uniform(0.0, 1.0))
    tone = _speed(rng, level, (0.12, 0.5, 0.88), [["black", "darkness"], ["a dark shade", "near black"],
                                                  ["a pale wash", "near white"], ["white", "bright white"]])
    return {"level": round(level, 4)}, {"verb": f"fades to {tone}", "gerund": f"fading to {tone}"}


def _swirl(rng) -> tuple[dict[str, Any], Words]:
    strength = float(rng.uniform(0.2, 1.2)) * (1 if rng.random() < 0.5 else -1)
    suck = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.3 else 0.0
    way = "clockwise" if strength < 0 else _pick(rng, ["counter-clockwise", "anticlockwise"])
    amount = _speed(rng, abs(strength), (0.5, 0.9), [["gently", "a little"], ["", "steadily"], ["hard", "strongly"]])
    into = " into a vortex" if suck else ""
    return ({"strength": round(strength, 4), "suck": round(suck, 4)},
            {"verb": f"swirls {amount} {way}{into}", "gerund": f"swirling {amount} {way}{into}"})


def _bulge(rng) -> tuple[dict[str, Any], Words]:
    inflate = rng.random() < 0.5
    amount = float(rng.uniform(0.3, 0.8)) if inflate else -float(rng.uniform(0.6, 1.5))
    size = _speed(rng, abs(amount), (0.55, 1.0), [["a little", "gently"], ["", "steadily"], ["a lot", "hugely"]])
    verb, gerund = (("puffs up", "puffing up") if inflate else ("pinches inward", "pinching inward"))
    return {"amount": round(amount, 4), "radius": round(float(rng.uniform(0.9, 1.3)), 4)}, \
        {"verb": f"{verb} {size}", "gerund": f"{gerund} {size}"}


def _blur(rng) -> tuple[dict[str, Any], Words]:
    sigma = float(rng.uniform(0.02, 0.12))
    amount = _speed(rng, sigma, (0.05, 0.09), [["slightly", "softly"], ["", "steadily"], ["heavily", "completely"]])
    return {"sigma": round(sigma, 4)}, {"verb": f"blurs {amount} out of focus", "gerund": f"blurring {amount} out of focus"}


def _shake(rng) -> tuple[dict[str, Any], Words]:
    amplitude = float(rng.uniform(0.02, 0.12))
    amount = _speed(rng, amplitude, (0.05, 0.09), [["slightly", "a little"], ["", "nervously"], ["violently", "hard"]])
    return {"amplitude": round(amplitude, 4), "seed": int(rng.integers(0, 99_999))}, \
        {"verb": f"shakes {amount}", "gerund": f"shaking {amount}"}


FAMILY_SAMPLERS: dict[str, Callable[[np.random.Generator], tuple[dict[str, Any], Words]]] = {
    "spin": _spin, "zoom": _zoom, "slide": _slide, "hue": _hue, "fade": _fade, "swirl": _swirl, "bulge": _bulge,
    "blur": _blur, "shake": _shake}

_SINGLE = ["the image {verb}", "the picture {verb}", "everything {verb}", "the whole scene {verb}", "{gerund}",
           "a clip of the frame {gerund}", "the view {verb}"]
_JOINED = ["the image {verb0} while {gerund1}", "{gerund0} and {gerund1}", "the picture {verb0}, {gerund1}",
           "everything {verb0} as it keeps {gerund1}", "{gerund0} while {gerund1}"]


def _clean(text: str) -> str:
    return " ".join(text.split())


def _normal(text: str) -> str:
    return _clean(text).lower()


@dataclass(frozen=True)
class Exclusion:
    """What the space keeps out: (family, coordinate, effect) values, family pairs, normalised prompts."""

    values: tuple[tuple[str, float, str], ...]
    pairs: frozenset[frozenset[str]]
    prompts: frozenset[str]

    def near(self, family: str, params: dict[str, Any]) -> str | None:
        """The excluded effect whose value `params` lies within MARGINS of, if any."""
        x = COORDINATES[family](params)
        for other, value, name in self.values:
            gap = abs(x - value) if family not in PERIODS else abs((x - value + PERIODS[family] / 2) % PERIODS[family]
                                                                    - PERIODS[family] / 2)
            if other == family and gap < MARGINS[family]:
                return name
        return None


def exclusion(names: Iterable[str] = ()) -> Exclusion:
    """The held-out effects, plus the library effects named (a sweep's validation effects): their values
    (one-family effects of a sampled family), their family pairs (compositions) and their prompts; and
    every library effect's held-out paraphrases. A name outside the library (a curated effect) has no
    value in the space and adds nothing."""
    named = set(names)
    effects = [e for e in EFFECTS if e.split == "heldout" or e.name in named]
    values = tuple((e.family, COORDINATES[e.family](e.params), e.name) for e in effects if e.family in FAMILY_SAMPLERS)
    pairs = frozenset(frozenset((a, b)) for e in effects for i, a in enumerate(e.families) for b in e.families[i + 1:])
    prompts = {_normal(p) for e in EFFECTS for p in e.heldout_prompts}
    prompts |= {_normal(p) for e in effects for p in e.prompts}
    return Exclusion(values, pairs, frozenset(prompts))


HELDOUT = exclusion()


def _prompts(rng, words: list[Words], n: int, forbidden: frozenset[str]) -> list[str]:
    if len(words) == 1:
        bank = [t.format(**words[0]) for t in _SINGLE]
    else:
        first, rest = words[0], words[1:]
        tail = [w["gerund"] for w in rest]
        joined = " and ".join(tail)
        bank = [t.format(verb0=first["verb"], gerund0=first["gerund"], gerund1=joined) for t in _JOINED]
    order = rng.permutation(len(bank))
    prompts = []
    for i in order:
        text = _clean(bank[i])
        if text.lower() not in forbidden and text not in prompts:
            prompts.append(text)
        if len(prompts) == n:
            break
    return prompts


def sample_effect(seed: int, prompts: int = 5, exclude: Exclusion = HELDOUT) -> Effect:
    """A training effect drawn from the space by `seed`: one parametric family, or 2-3 of them at once
    (no excluded pair among them), each family's value redrawn until it is outside the excluded
    values' margins, with `prompts` paraphrases (the first is its caption), none an excluded prompt."""
    rng = np.random.default_rng([30, seed])
    families = sorted(FAMILY_SAMPLERS)
    count = 1 if rng.random() >= COMPOSITION_SHARE else (2 if rng.random() < 0.75 else 3)
    while True:
        chosen = [families[i] for i in rng.choice(len(families), count, replace=False)]
        pairs = {frozenset((a, b)) for i, a in enumerate(chosen) for b in chosen[i + 1:]}
        if not pairs & exclude.pairs:
            break
    drawn = []
    for family in chosen:
        while exclude.near(family, (pick := FAMILY_SAMPLERS[family](rng))[0]):
            pass
        drawn.append(pick)
    words = [w for _, w in drawn]
    params = drawn[0][0] if count == 1 else {f: p for f, (p, _) in zip(chosen, drawn)}
    texts = _prompts(rng, words, prompts, exclude.prompts)
    return Effect(name=f"space-{seed}", family="+".join(chosen), params=params, prompts=tuple(texts),
                  heldout_prompts=(), split="train")
