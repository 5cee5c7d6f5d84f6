"""The procedural effect library: named effects with exact ground truth for any photo.

An effect is data (`library.Effect`: name, family, params, jitter ranges, prompts, split) plus a
family function in `ops` mapping (image, params, t) to a frame. `render` turns a photo into the
effect's clip; frame 0 is the photo itself, exactly (image-to-video starts from the input image).

    from p2e_cli.effects import get_effect, render
    from p2e_cli.photos import load_photo
    clip = render("melt", load_photo("chelsea", 64), frames=17)   # (17, 64, 64, 3) uint8
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import P2EError
from .library import EFFECTS, Effect
from .ops import FAMILIES

SPLITS = ("train", "heldout")
_BY_NAME = {e.name: e for e in EFFECTS}

__all__ = ["EFFECTS", "Effect", "FAMILIES", "SPLITS", "effects", "effect_names", "extra_prompts", "families",
           "get_effect", "frame", "render", "sample_params", "sheet"]


def _check_split(split: str) -> None:
    if split != "all" and split not in SPLITS:
        raise P2EError(f"unknown effect split {split!r}", hint="use train, heldout or all")


def effects(split: str = "all", family: str | None = None) -> list[Effect]:
    """Effects of a split ("train", "heldout", "all"), optionally only those using `family`
    (alone or inside a composition)."""
    _check_split(split)
    if family is not None and family not in FAMILIES:
        raise P2EError(f"unknown effect family {family!r}", hint=f"families: {', '.join(families())}")
    return [e for e in EFFECTS if (split == "all" or e.split == split) and (family is None or family in e.families)]


def effect_names(split: str = "all", family: str | None = None) -> list[str]:
    return [e.name for e in effects(split, family)]


@functools.cache
def _extra_prompts() -> dict[str, tuple[str, ...]]:
    with open(Path(__file__).with_name("extra_prompts.json"), encoding="utf-8") as f:
        return {name: tuple(prompts) for name, prompts in json.load(f).items()}


def extra_prompts(name: str | Effect) -> tuple[str, ...]:
    """More training paraphrases of a train effect, for the hypernetwork only (recipe key
    extra_paraphrases): `Effect.prompts` also caption the effect's clips, so these live apart.
    Written without sight of the held-out paraphrases; empty for held-out effects."""
    return _extra_prompts().get(get_effect(name).name, ())


def families() -> list[str]:
    return sorted(FAMILIES)


def get_effect(name: str | Effect) -> Effect:
    """An effect by name (an `Effect` passes through)."""
    if isinstance(name, Effect):
        return name
    try:
        return _BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _BY_NAME, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "list them with: p2e effects ls"
        raise P2EError(f"unknown effect {name!r}", hint=hint) from None


def frame(effect: str | Effect, image: np.ndarray, t: float, params: Mapping[str, Any] | None = None) -> np.ndarray:
    """One frame at progress `t` of a float32 (H, W, 3) image in [0, 1]; float32 out."""
    effect = get_effect(effect)
    params = effect.params if params is None else params
    if len(effect.families) == 1:
        return FAMILIES[effect.family](image, params, t)
    for family in effect.families:
        image = FAMILIES[family](image, params[family], t)
    return image


def render(effect: str | Effect, image: np.ndarray, frames: int = 17, params: Mapping[str, Any] | None = None) -> np.ndarray:
    """The effect's clip from a (H, W, 3) uint8 image: (frames, H, W, 3) uint8, t evenly spaced over [0, 1].

    Frame 0 is the input image, exactly; `params` defaults to the effect's own (pass the output of
    `sample_params` for a jittered clip).
    """
    effect = get_effect(effect)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise P2EError(f"render needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if frames < 2:
        raise P2EError(f"an effect clip needs at least 2 frames, got {frames}")
    source = image.astype(np.float32) / 255.0
    clip = np.empty((frames, *image.shape), np.uint8)
    clip[0] = image
    for i, t in enumerate(np.linspace(0.0, 1.0, frames)[1:], start=1):
        clip[i] = (np.clip(frame(effect, source, float(t), params), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return clip


def sample_params(effect: str | Effect, rng: np.random.Generator | int | None = None) -> dict[str, Any]:
    """The effect's params with every jittered parameter drawn uniformly from its declared range
    (integers when both bounds are integers). Deterministic for a given generator state or seed."""
    effect = get_effect(effect)
    rng = np.random.default_rng(rng)
    params = copy.deepcopy(effect.params)
    for key in sorted(effect.jitter):
        low, high = effect.jitter[key]
        value = int(rng.integers(low, high + 1)) if isinstance(low, int) and isinstance(high, int) \
            else round(float(rng.uniform(low, high)), 4)
        *path, leaf = key.split(".")
        target = params
        for part in path:
            target = target[part]
        target[leaf] = value
    return params


def sheet(rows: list[tuple[str | Effect, str]], labels: list[str] | None = None, size: int = 64, frames: int = 17,
          columns: int = 9, panels: int = 1, advance: Callable[[], None] | None = None) -> np.ndarray:
    """A contact sheet image (H, W, 3) uint8: one row per (effect, photo) pair showing `columns`
    evenly spaced frames of its clip, labelled, split into `panels` side-by-side columns.
    `advance` is called after each row is rendered (a progress bar)."""
    import math

    from ..photos import load_photo
    from ..video import contact_sheet

    clips = []
    for effect, photo in rows:
        clips.append(render(effect, load_photo(photo, size), frames))
        if advance:
            advance()
    labels = labels or [get_effect(effect).name for effect, _ in rows]
    per_panel = math.ceil(len(clips) / panels)
    parts = [contact_sheet(clips[i:i + per_panel], labels[i:i + per_panel], max_columns=columns)
             for i in range(0, len(clips), per_panel)]
    height, gap = max(p.shape[0] for p in parts), 12
    parts = [np.pad(p, ((0, height - p.shape[0]), (0, gap), (0, 0)), constant_values=255) for p in parts]
    return np.concatenate(parts, axis=1)[:, :-gap]
