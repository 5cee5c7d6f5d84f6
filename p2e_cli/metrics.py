"""Metrics shared by training logs, evaluation and world checks: effect identification, PSNR,
recovery R and ΔW agreement (NMSE, cosine).

Effect identification (issue 29): is a rendered clip the effect it was meant to be? Rank it against
the exact ground truth of every library effect plus the still photo, all from the same first frame:

    render (T, H, W, 3) ----\\
                             low-pass each frame 1..T-1 (Gaussian, sigma IDENT_SIGMA px)
    truths (K, T, H, W, 3) --/   -> mean squared difference per candidate -> rank of the target

The low-pass forgives per-pixel grain (a world's sampling noise averages out over a few pixels)
but keeps everything an effect is made of at the scale of the picture: where content went
(rotation, zoom, a slide), its shape, its colour. A blurred, darkened or dissolved clip is far from
the sharp, moving truth and nearer a blur, fade or dissolve effect (tests/unit/test_metrics.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from .canon import low_rank_inner

if TYPE_CHECKING:
    import torch

IDENT_SIGMA = 1.0  # px at the render's size; tests/unit/test_metrics.py shows why


def low_pass(frames: np.ndarray, sigma: float = IDENT_SIGMA) -> np.ndarray:
    """Gaussian blur of (..., H, W, C) frames over H and W, in float64 (edges reflected)."""
    from scipy.ndimage import gaussian_filter

    frames = np.asarray(frames, dtype=np.float64)
    if sigma <= 0:
        return frames
    return gaussian_filter(frames, [0.0] * (frames.ndim - 3) + [sigma, sigma, 0.0], mode="reflect", truncate=3.0)


def identification_distances(render: np.ndarray, truths: np.ndarray, sigma: float = IDENT_SIGMA) -> np.ndarray:
    """Distance of a clip (T, H, W, 3) to each of K candidate clips (K, T, H, W, 3), uint8 or [0, 255]
    floats: the mean squared difference of their low-passed frames 1..T-1 (frame 0 is the shared
    input image). Returns K distances in (0-255 units)^2."""
    render, truths = np.asarray(render), np.asarray(truths)
    if truths.shape[1:] != render.shape:
        raise ValueError(f"candidates {truths.shape[1:]} and render {render.shape} differ in shape")
    a = low_pass(render[1:], sigma)
    b = low_pass(truths[:, 1:], sigma)
    return ((b - a[None]) ** 2).reshape(len(b), -1).mean(1)


def identification_rank(render: np.ndarray, truths: np.ndarray, target: int, sigma: float = IDENT_SIGMA) -> int:
    """1-based rank of candidate `target` among all candidates by identification distance (ties count
    against the target)."""
    d = identification_distances(render, truths, sigma)
    return int(np.sum(d <= d[target]))


# PSNR: the codec's reconstruction and renders against their input


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors in [-1, 1] (peak-to-peak 2)."""
    import torch

    mse = (a.float() - b.float()).pow(2).mean().clamp_min(1e-12)
    return float(10 * torch.log10(4.0 / mse))


def vae_psnr(vae, clips: "torch.Tensor", chunk: int = 4) -> float:
    """Mean reconstruction PSNR over clips (B, 3, T, H, W)."""
    import torch

    values = []
    with torch.no_grad():
        for i in range(0, len(clips), chunk):
            x = clips[i:i + chunk].to(vae.device)
            values.append(psnr(vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1), x))
    return sum(values) / len(values)


def frames_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8 images/clips."""
    mse = max(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)), 1e-10)
    return float(10 * np.log10(255.0 ** 2 / mse))


# Recovery R: how much of the loss gap between the base and the reference a prediction closes


def recovery(l0: float, l_pred: float, l_ref: float) -> float | None:
    """R = (L0 - L_pred) / (L0 - L_ref): 1 when the prediction does as well as the reference, 0 when it
    does as well as no LoRA. None when the reference has no gap to recover (L_ref >= L0)."""
    gap = l0 - l_ref
    return (l0 - l_pred) / gap if gap > 0 else None


def pooled_recovery(rows: list[dict[str, Any]], pred: str = "L_pred") -> float | None:
    """sum(L0 - L_pred) / sum(L0 - L_ref) over the rows with a gap to recover: the recovery of a split's
    total loss gap. Unlike the median of per-effect R, it is not swung by effects whose gap L0 - L_ref
    is near zero (their R is mostly noise)."""
    rows = [r for r in rows if r["L0"] > r["L_ref"]]
    return sum(r["L0"] - r[pred] for r in rows) / sum(r["L0"] - r["L_ref"] for r in rows) if rows else None


# ΔW agreement of low-rank updates ΔW = B·A, from r x r Gram matrices (no ΔW is formed)


def frob2_of_product_difference(b1, a1, b2, a2) -> "torch.Tensor":
    """‖B1·A1 − B2·A2‖²_F per batch row, via (2r×2r) Gram matrices: tr((UᵀU)(VVᵀ)) with
    U = [B1, −B2], V = [A1; A2]. Shapes (batch, out, r), (batch, r, in)."""
    import torch

    u = torch.cat([b1, -b2], dim=2)
    v = torch.cat([a1, a2], dim=1)
    return low_rank_inner(u, v, u, v)


def delta_nmse(pred: list[tuple["torch.Tensor", "torch.Tensor"]], target: list[tuple["torch.Tensor", "torch.Tensor"]]) -> "torch.Tensor":
    """Per batch row, the mean over layers of ‖ΔŴ − ΔW‖² / ‖ΔW‖² (the hypernetwork's training loss term)."""
    import torch

    values = []
    for (pb, pa), (tb, ta) in zip(pred, target):
        err = frob2_of_product_difference(pb, pa, tb, ta)
        ref = low_rank_inner(tb, ta, tb, ta).clamp_min(1e-12)
        values.append(err / ref)
    return torch.stack(values).mean(0)


def delta_nmse_matrix(pred: list[tuple["torch.Tensor", "torch.Tensor"]],
                      refs: list[tuple["torch.Tensor", "torch.Tensor"]]) -> "torch.Tensor":
    """(p, k): the mean over layers of ‖ΔŴ_i − ΔW_j‖² / ‖ΔW_j‖² for every prediction i and reference j (delta_nmse
    of every pair). Per layer, batched factors (n, out, r), (n, r, in); the cross terms <ΔŴ_i, ΔW_j> come from two
    Gram matmuls of all the factors at once, (p·r × out)(out × k·s) and (p·r × in)(in × k·s)."""
    import torch

    values = []
    for (pb, pa), (rb, ra) in zip(pred, refs):
        (p, _, r), (k, _, s) = pb.shape, rb.shape
        left = pb.transpose(1, 2).reshape(p * r, -1) @ rb.transpose(1, 2).reshape(k * s, -1).T  # (B_iᵀ B_j)
        right = pa.reshape(p * r, -1) @ ra.reshape(k * s, -1).T  # (A_i A_jᵀ)
        cross = (left * right).view(p, r, k, s).sum((1, 3))
        pp, rr = low_rank_inner(pb, pa, pb, pa), low_rank_inner(rb, ra, rb, ra)
        values.append((pp[:, None] + rr[None, :] - 2 * cross).clamp_min(0) / rr.clamp_min(1e-12)[None, :])
    return torch.stack(values).mean(0)


def delta_retrieval_ranks(pred: list[tuple["torch.Tensor", "torch.Tensor"]],
                          refs: list[tuple["torch.Tensor", "torch.Tensor"]]) -> "torch.Tensor":
    """Prediction i is for effect i: the 1-based rank of reference i among all k references by ΔW NMSE
    (delta_nmse) to prediction i, ties counted against it. Per layer, pred and refs are batched factors
    (k, out, r), (k, r, in). A network that ignores the prompt ranks its own effect at random."""
    nmse = delta_nmse_matrix(pred, refs)  # (prediction, reference)
    return (nmse <= nmse.diagonal()[:, None]).sum(1)


def block_label(layer: str) -> str:
    """The transformer block a layer name sits in ("blocks.3", "transformer_2.blocks.3"), or "other"."""
    match = re.match(r"(.*?blocks\.\d+)\.", layer)
    return match.group(1) if match else "other"


def delta_agreement(pred: dict[str, tuple["torch.Tensor", "torch.Tensor"]],
                    ref: dict[str, tuple["torch.Tensor", "torch.Tensor"]]) -> dict[str, Any]:
    """NMSE ‖ΔWp − ΔWr‖²/‖ΔWr‖² and cosine <ΔWp, ΔWr>/(‖ΔWp‖‖ΔWr‖), summed over layers (one LoRA
    against another, as evaluation reports them), and the NMSE per transformer block (`nmse_blocks`).
    Factors as {layer: (B, A)} with ΔW = B·A."""
    sums: dict[str, list[float]] = {}  # block -> [pp, rr, pr]
    for name, (br, ar) in ref.items():
        bp, ap = pred[name]
        bp, ap, br, ar = (t.double() for t in (bp, ap, br, ar))
        terms = [float(low_rank_inner(*f)) for f in ((bp, ap, bp, ap), (br, ar, br, ar), (bp, ap, br, ar))]
        block = sums.setdefault(block_label(name), [0.0, 0.0, 0.0])
        for k, value in enumerate(terms):
            block[k] += value

    def nmse(pp: float, rr: float, pr: float) -> float:
        return (pp + rr - 2 * pr) / max(rr, 1e-30)

    pp, rr, pr = (sum(v[k] for v in sums.values()) for k in range(3))
    return {"nmse": nmse(pp, rr, pr), "cosine": pr / max((pp * rr) ** 0.5, 1e-30),
            "nmse_blocks": {block: nmse(*v) for block, v in sorted(sums.items(), key=lambda kv: _natural(kv[0]))}}


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
