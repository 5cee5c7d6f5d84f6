"""Effect identification: does a render *perform* its effect? (issue 29; the distance is metrics.py's)

    held-out photo --render (base, a reference or a predicted LoRA; default settings)--> clip
    held-out photo --exact ground truth of every library effect, plus the still photo--> candidates
    rank of the intended effect among the candidates by identification distance -> top-1 / top-5

Reported per split (train / heldout) and per group (geometric / photometric / composition) by
`p2e eval run` (references, predictions, the bare base) and `p2e world eval` (the bare base, and the
VAE round trip of every effect's ground truth). R and render MSE are relative measures; a world whose
references blur scores well on them while showing nothing, and identification catches that.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from . import effects as fx
from .metrics import identification_distances

PHOTOS = ("coffee", "harbour")  # held-out photos (photos.py): never in any training corpus
STILL = "still"
# the contact sheet's rows: one effect of each kind users ask for first, and two held-out compositions
SHEET_EFFECTS = ("spin-cw", "zoom-in", "melt", "slide-left", "squish", "swirl-cw", "inflate", "shatter",
                 "spin-fade-black", "melt-red")


def candidate_names() -> list[str]:
    return fx.effect_names() + [STILL]


@functools.lru_cache(maxsize=8)
def candidates(photo: str, size: int, frames: int) -> np.ndarray:
    """(K, T, H, W, 3) uint8: the exact ground truth of every library effect on a photo, then the still photo."""
    from .photos import load_photo

    image = load_photo(photo, size)
    return np.stack([fx.render(name, image, frames) for name in fx.effect_names()] + [np.repeat(image[None], frames, 0)])


def identify(effect: str, renders: dict[str, np.ndarray]) -> dict[str, Any]:
    """Rank `effect` among the candidates for each photo's render ({photo: (T, H, W, 3) uint8}):
    ranks (1-based), the nearest candidate per photo, top-1 and top-5 rates over the photos."""
    names = candidate_names()
    target = names.index(effect)
    ranks, nearest = [], []
    for photo, clip in renders.items():
        d = identification_distances(clip, candidates(photo, clip.shape[2], clip.shape[0]))
        ranks.append(int(np.sum(d <= d[target])))
        nearest.append(names[int(np.argmin(d))])
    return {"ranks": ranks, "nearest": nearest, "top1": float(np.mean([r == 1 for r in ranks])),
            "top5": float(np.mean([r <= 5 for r in ranks]))}


def render_on_photos(render: Callable[[np.ndarray], np.ndarray], size: int, photos: tuple[str, ...] = PHOTOS) -> dict[str, np.ndarray]:
    """{photo: render(image)} on each held-out photo at the render size."""
    from .photos import load_photo

    return {photo: render(load_photo(photo, size)) for photo in photos}


def summarize(rows: list[dict[str, Any]], slot: str) -> dict[str, Any]:
    """Top-1 / top-5 of `slot` (rows carry row[f"ident_{slot}"] from `identify`) over all effects, per split
    and per split x group."""
    out: dict[str, Any] = {}
    for split in ("train", "heldout", "all"):
        part = [r for r in rows if f"ident_{slot}" in r and (split == "all" or r["split"] == split)]
        if not part:
            continue
        groups = {}
        for group in ("geometric", "photometric", "composition"):
            members = [r for r in part if fx.get_effect(r["effect"]).group == group]
            if members:
                groups[group] = _rates(members, slot)
        out[split] = {**_rates(part, slot), "groups": groups}
    return out


def _rates(rows: list[dict[str, Any]], slot: str) -> dict[str, Any]:
    return {"effects": len(rows), "top1": float(np.mean([r[f"ident_{slot}"]["top1"] for r in rows])),
            "top5": float(np.mean([r[f"ident_{slot}"]["top5"] for r in rows]))}


def sheet(rows: list[tuple[str, dict[str, np.ndarray]]], photo: str, out) -> None:
    """A contact sheet: per effect, the ground truth then each labelled render on `photo`.
    rows: (effect, {label: clip}) with clips rendered on `photo`."""
    from .video import contact_sheet, write_image

    clips, labels = [], []
    for effect, renders in rows:
        first = next(iter(renders.values()))
        clips.append(candidates(photo, first.shape[2], first.shape[0])[candidate_names().index(effect)])
        labels.append(f"{effect}: truth")
        for label, clip in renders.items():
            clips.append(clip)
            labels.append(f"{effect}: {label}")
    write_image(contact_sheet(clips, labels, max_columns=9), out)


def vae_effect_psnr(vae, size: int, frames: int, photos: tuple[str, ...] = PHOTOS) -> dict[str, float]:
    """Round-trip PSNR (dB) of every library effect's exact ground truth through the VAE, mean over the photos."""
    import torch

    from .metrics import vae_psnr

    out = {}
    for i, name in enumerate(fx.effect_names()):
        clips = np.stack([candidates(photo, size, frames)[i] for photo in photos])
        x = torch.from_numpy(clips).float().permute(0, 4, 1, 2, 3) / 127.5 - 1.0
        out[name] = vae_psnr(vae, x)
    return out


def psnr_summary(per_effect: dict[str, float]) -> dict[str, float]:
    values = np.array(sorted(per_effect.values()))
    return {"vae_psnr_effects_median": float(np.median(values)), "vae_psnr_effects_p10": float(np.percentile(values, 10)),
            "vae_psnr_effects_min": float(values[0])}
