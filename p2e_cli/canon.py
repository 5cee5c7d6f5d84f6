"""SVD-canonical LoRAs, LoRA mixing, and the spectral compressibility gap of W0 vs ΔW.

A LoRA's factors are not unique: B·A = (B·M)(M⁻¹·A) for any invertible M. The canonical form
replaces a layer's update ΔW = (alpha / r)·B·A by its thin SVD U S Vᵀ and writes

    B' = U S^½,   A' = S^½ Vᵀ,   lora_alpha = r   (so the scale alpha / r is 1),

with each singular pair's sign fixed: the largest-|entry| of each column of U (first index on a
tie) is made positive, flipping the matching row of Vᵀ. All of it runs in float64 on the factors
only (QR of B and Aᵀ, then the SVD of the small r×r core), so ΔW is never formed and a 5120×13824
layer costs about as much as a 32×32 SVD plus two thin QRs.

Rank deficiency: singular values at or below s₀·max(out, in)·eps₆₄ (numpy's matrix_rank
threshold) are numerical zeros; their pairs are written as exact zeros. The output always keeps
rank r (zero pairs pad it), also when out < r or in < r, so every layer keeps its file shape.
Exactly repeated singular values leave the basis inside their subspace to LAPACK (any orthogonal
basis of it is an SVD); ΔW stays exact.

Idempotence: a pair that already is canonical to its own precision (`is_canonical`, a tolerance
scaled by the dtype's eps) is returned unchanged, so canonicalizing a canonical LoRA, in float64
or after storing it as float32, gives back bit-identical factors.

Heavy libraries (torch, safetensors, matplotlib) are imported inside the functions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from .errors import P2EError

if TYPE_CHECKING:
    import torch

    from .lora_io import LoraFile

# k/n grid on which spectrum curves are reported and plotted (n = min(out, in) of each layer)
SPECTRUM_FRACTIONS = tuple(round(i / 20, 2) for i in range(21))


# -- one layer ---------------------------------------------------------------------------------


def low_rank_svd(B: torch.Tensor, A: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD U·diag(S)·Vᵀ of scale·B·A in float64, without forming B·A.

    B = Q_B R_B and Aᵀ = Q_A R_A (reduced QR); scale·R_B R_Aᵀ = U_c S V_cᵀ (a small SVD);
    then U = Q_B U_c and V = Q_A V_c. Returns U (out, m), S (m,), V (in, m), m = min(out, in, r);
    batched over leading dims."""
    import torch

    q_b, r_b = torch.linalg.qr(B.detach().to(torch.float64))
    q_a, r_a = torch.linalg.qr(A.detach().to(torch.float64).mT)
    u_c, s, v_ch = torch.linalg.svd(float(scale) * (r_b @ r_a.mT), full_matrices=False)
    return q_b @ u_c, s, q_a @ v_ch.mT


def truncate(B: torch.Tensor, A: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-`rank` factors (U·S^½, S^½·Vᵀ) of B·A, batched over leading dims: B (..., out, k),
    A (..., k, in) with k >= rank, from low_rank_svd (float64 inside, the input dtype out). Signs
    are not fixed: canonical_factors does that for a file."""
    import torch

    U, S, V = low_rank_svd(B, A)
    root = S[..., :rank].sqrt()
    b = U[..., :rank] * root.unsqueeze(-2)
    a = root.unsqueeze(-1) * V[..., :rank].mT
    if b.shape[-1] < rank:  # a layer narrower than `rank`: zero pairs pad it
        pad = rank - b.shape[-1]
        b = torch.cat([b, b.new_zeros(*b.shape[:-1], pad)], dim=-1)
        a = torch.cat([a, a.new_zeros(*a.shape[:-2], pad, a.shape[-1])], dim=-2)
    return b.to(B.dtype), a.to(A.dtype)


def numerical_zero(s: torch.Tensor, shape: tuple[int, int]) -> float:
    """The threshold below which a singular value of an (out, in) product is zero:
    s₀·max(out, in)·eps₆₄ (numpy's matrix_rank default)."""
    import torch

    top = float(s.max()) if s.numel() else 0.0
    return top * max(shape) * torch.finfo(torch.float64).eps


def canonical_from_svd(U: torch.Tensor, S: torch.Tensor, V: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B', A') = (U S^½, S^½ Vᵀ) at `rank`: the top `rank` pairs (zero pairs pad a shorter SVD),
    numerical-zero pairs exactly zero, and each pair's sign fixed so the largest-|entry| of each
    column of U (first index on a tie) is positive."""
    import torch

    keep = min(rank, S.numel())
    U, S, V = U[:, :keep], S[:keep].clone(), V[:, :keep]
    S[S <= numerical_zero(S, (U.shape[0], V.shape[0]))] = 0.0
    root = S.sqrt()
    pivot = U.abs().argmax(dim=0, keepdim=True)
    sign = torch.where(U.gather(0, pivot) < 0, -1.0, 1.0).to(torch.float64)
    b = U * (root * sign)
    a = (V * (root * sign)).T
    b[:, S == 0] = 0.0
    a[S == 0, :] = 0.0
    if keep < rank:
        b = torch.cat([b, b.new_zeros(b.shape[0], rank - keep)], dim=1)
        a = torch.cat([a, a.new_zeros(rank - keep, a.shape[1])], dim=0)
    return b.contiguous(), a.contiguous()


def canonical_tolerance(dtype: torch.dtype, shape: tuple[int, int, int]) -> float:
    """How far from exact a pair stored in `dtype` may be and still count as canonical: 64·eps of
    the dtype, and never below the float64 computation's own error, 64·√max(out, in, r)·eps₆₄."""
    import torch

    return max(64 * torch.finfo(dtype).eps, 64 * math.sqrt(max(shape)) * torch.finfo(torch.float64).eps)


def is_canonical(B: torch.Tensor, A: torch.Tensor, alpha: float, rtol: float | None = None) -> bool:
    """True when (B, A, alpha) already is in canonical form to `rtol` (default
    `canonical_tolerance` of B's dtype): alpha = r; BᵀB = A·Aᵀ = diag(s) with s non-increasing,
    all up to rtol·max(s) (B = U S^½ gives BᵀB = S); and each non-zero column of B has its
    largest-|entry| (first index on a tie) positive."""
    import torch

    r = int(A.shape[0])
    if float(alpha) != float(r) or B.shape[1] != r:
        return False
    if rtol is None:
        rtol = canonical_tolerance(B.dtype, (int(B.shape[0]), int(A.shape[1]), r))
    b, a = B.detach().to(torch.float64), A.detach().to(torch.float64)
    gram_b, gram_a = b.T @ b, a @ a.T
    s = torch.diagonal(gram_b)
    top = float(torch.maximum(s.max(), torch.diagonal(gram_a).max())) if r else 0.0
    if top == 0.0:
        return bool((b == 0).all() and (a == 0).all())
    slack = rtol * top
    if not (bool(((gram_b - torch.diag(s)).abs() <= slack).all()) and bool(((gram_a - torch.diag(s)).abs() <= slack).all())):
        return False
    if bool((s[1:] > s[:-1] + slack).any()):
        return False
    pivots = b.abs().argmax(dim=0, keepdim=True)
    return bool((b.gather(0, pivots) >= 0).all())


def canonical_factors(B: torch.Tensor, A: torch.Tensor, alpha: float, r: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The canonical factors of ΔW = (alpha / r)·B·A, in float64, to be written with lora_alpha = r:
    U S Vᵀ = ΔW (thin SVD via `low_rank_svd`), B' = U S^½, A' = S^½ Vᵀ, signs fixed per pair
    (`canonical_from_svd`). `r` is the rank in alpha / r and must be the factors' inner size
    (default: it). A pair that `is_canonical` is returned as is (cast to float64)."""
    import torch

    rank = int(A.shape[0])
    if B.ndim != 2 or A.ndim != 2 or B.shape[1] != rank:
        raise P2EError(f"LoRA factors do not fit: B {tuple(B.shape)}, A {tuple(A.shape)}",
                       hint="B must be (out, r) and A (r, in)")
    if r is not None and int(r) != rank:
        raise P2EError(f"rank {r} given, but the factors have rank {rank}")
    if is_canonical(B, A, alpha):
        return B.detach().to(torch.float64), A.detach().to(torch.float64)
    U, S, V = low_rank_svd(B, A, float(alpha) / rank)
    return canonical_from_svd(U, S, V, rank)


def low_rank_inner(B1, A1, B2, A2):
    """<B1·A1, B2·A2>_F without forming either product: tr(A1ᵀB1ᵀB2A2) = Σ (B1ᵀB2) ⊙ (A1A2ᵀ), an
    (r1×r2) computation. Batched over leading dims: B (..., out, r), A (..., r, in) -> (...)."""
    return ((B1.mT @ B2) * (A1 @ A2.mT)).sum(dim=(-2, -1))


def low_rank_norm(B: torch.Tensor, A: torch.Tensor) -> float:
    """‖B·A‖_F without forming B·A: ‖R_B R_Aᵀ‖_F with B = Q_B R_B and Aᵀ = Q_A R_A (float64)."""
    import torch

    _, r_b = torch.linalg.qr(B.detach().to(torch.float64), mode="r")
    _, r_a = torch.linalg.qr(A.detach().to(torch.float64).T, mode="r")
    return float(torch.linalg.matrix_norm(r_b @ r_a.T))


def relative_error(B1: torch.Tensor, A1: torch.Tensor, scale1: float,
                   B2: torch.Tensor, A2: torch.Tensor, scale2: float) -> float:
    """‖ΔW₁ − ΔW₂‖_F / ‖ΔW₁‖_F for ΔWᵢ = scaleᵢ·Bᵢ·Aᵢ, from the stacked factors
    [scale₁B₁, −scale₂B₂]·[A₁; A₂] (no ΔW formed). 0 when both are zero, inf when only ΔW₁ is."""
    import torch

    b = torch.cat([float(scale1) * B1.to(torch.float64), -float(scale2) * B2.to(torch.float64)], dim=1)
    a = torch.cat([A1.to(torch.float64), A2.to(torch.float64)], dim=0)
    diff, ref = low_rank_norm(b, a), abs(float(scale1)) * low_rank_norm(B1, A1)
    return diff / ref if ref else (0.0 if diff == 0 else math.inf)


def mix_factors(terms: Sequence[tuple[torch.Tensor, torch.Tensor, float]], rank: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical rank-`rank` factors of Σᵢ cᵢ·Bᵢ·Aᵢ for terms (Bᵢ, Aᵢ, cᵢ), and all singular values
    of the sum (the energy kept is Σ_{j<rank} s_j² / Σ_j s_j²). The sum is the product of stacked
    factors [c₁B₁ | c₂B₂ | …]·[A₁; A₂; …], so its SVD comes from `low_rank_svd`, and truncating it
    gives the best rank-`rank` approximation (Eckart–Young)."""
    import torch

    b = torch.cat([float(c) * B.to(torch.float64) for B, _, c in terms], dim=1)
    a = torch.cat([A.to(torch.float64) for _, A, _ in terms], dim=0)
    U, S, V = low_rank_svd(b, a)
    B_mix, A_mix = canonical_from_svd(U, S, V, rank)
    return B_mix, A_mix, S


def mean_factors(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical rank-`rank` factors of the mean of ΔWᵢ = Bᵢ·Aᵢ (a library's mean LoRA)."""
    b, a, _ = mix_factors([(B, A, 1.0 / len(pairs)) for B, A in pairs], rank)
    return b, a


# -- whole LoRA files --------------------------------------------------------------------------


def _storage_dtype(lora: LoraFile) -> torch.dtype:
    """float64 sources stay float64; everything else is written as float32 (never bf16/fp16: the
    canonical factors are training targets)."""
    import torch

    dtypes = {layer.A.dtype for layer in lora.layers.values()} | {layer.B.dtype for layer in lora.layers.values()}
    return torch.float64 if dtypes == {torch.float64} else torch.float32


def canonical_lora(lora: LoraFile) -> LoraFile:
    """Every layer of a LoRA in canonical form (`canonical_factors`, alpha = its rank), full deltas
    (`diffs`) and metadata unchanged, stored as float32 (float64 if the source is). The float32
    rounding changes ΔW by ~1e-7 relative; `relative_error` measures it without forming ΔW."""
    from .lora_io import LoraFile, LoraLayer

    dtype = _storage_dtype(lora)
    layers = {}
    for name, layer in lora.layers.items():
        b, a = canonical_factors(layer.B, layer.A, layer.alpha)
        layers[name] = LoraLayer(a.to(dtype), b.to(dtype), float(layer.rank))
    return LoraFile(layers, dict(lora.diffs), dict(lora.metadata), lora.format, lora.path)


def mix_loras(items: Sequence[tuple[LoraFile, float]], rank: int | None = None) -> tuple[LoraFile, dict[str, Any]]:
    """Σᵢ wᵢ·ΔWᵢ for LoRAs with weights wᵢ, re-factored per layer to canonical rank `rank` (default:
    the largest input rank) by `mix_factors`; full deltas summed with the same weights. Layers
    missing from a LoRA count as zero there. Returns the LoRA (float32, alpha = rank) and stats:
    kept_energy (Σ kept s² / Σ s² over all layers) and min_layer_kept_energy."""
    from .lora_io import LoraFile, LoraLayer

    if not items:
        raise P2EError("nothing to mix", hint="give at least one LORA:WEIGHT")
    if rank is None:
        rank = max(max(lora.ranks, default=0) for lora, _ in items)
        if rank < 1:
            raise P2EError("the LoRAs to mix have no low-rank layers", hint="give LoRAs with lora_A/lora_B factors")
    elif rank < 1:
        raise P2EError(f"--rank must be at least 1, got {rank}")
    names = list(dict.fromkeys(name for lora, _ in items for name in lora.layers))
    layers, kept_total, energy_total, worst = {}, 0.0, 0.0, 1.0
    for name in names:
        present = [(lora.layers[name], w) for lora, w in items if name in lora.layers]
        shapes = {layer.shape for layer, _ in present}
        if len(shapes) > 1:
            raise P2EError(f"layer {name} has different shapes in the LoRAs to mix: {', '.join(map(str, sorted(shapes)))}",
                           hint="mix LoRAs made for the same base")
        terms = [(layer.B, layer.A, w * layer.scale) for layer, w in present]
        b, a, s = mix_factors(terms, rank)
        energy, kept = float((s ** 2).sum()), float((s[:rank] ** 2).sum())
        layers[name] = LoraLayer(a.float(), b.float(), float(rank))
        kept_total += kept
        energy_total += energy
        worst = min(worst, kept / energy if energy else 1.0)
    diffs: dict[str, torch.Tensor] = {}
    for lora, w in items:
        for name, diff in lora.diffs.items():
            if name in diffs and diffs[name].shape != diff.shape:
                raise P2EError(f"delta {name} has different shapes in the LoRAs to mix", hint="mix LoRAs made for the same base")
            diffs[name] = diffs.get(name, 0) + w * diff.float()
    stats = {"rank": rank, "kept_energy": kept_total / energy_total if energy_total else 1.0,
             "min_layer_kept_energy": worst}
    return LoraFile(layers, diffs), stats


# -- spectrum: the compressibility gap ---------------------------------------------------------


def w0_energy_curve(S: torch.Tensor) -> torch.Tensor:
    """E_W0(k) = Σ_{i<k} σᵢ² / Σᵢ σᵢ² for k = 0..n: the energy of W0 in its own top-k singular
    subspace (left and right give the same number)."""
    import torch

    energy = S.to(torch.float64) ** 2
    total = float(energy.sum())
    curve = torch.cat([energy.new_zeros(1), energy.cumsum(0)])
    return curve / total if total else curve


def delta_energy_curves(U: torch.Tensor, V: torch.Tensor, B: torch.Tensor, A: torch.Tensor, scale: float
                        ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For ΔW = scale·B·A and W0's singular vectors U (out, n), V (in, n), k = 0..n:
    left(k) = ‖U_kᵀ ΔW‖²_F / ‖ΔW‖²_F and right(k) = ‖ΔW V_k‖²_F / ‖ΔW‖²_F, where U_k, V_k are the
    top-k columns. ‖uᵢᵀΔW‖² = pᵢ (A Aᵀ) pᵢᵀ with pᵢ = uᵢᵀB (and alike on the right), so ΔW is
    never formed. left(n) < 1 when ΔW leaves W0's column space (out > in). None when ΔW = 0."""
    import torch

    b, a = B.to(torch.float64), A.to(torch.float64)
    gram_b, gram_a = b.T @ b, a @ a.T
    total = float((gram_b * gram_a).sum()) * scale ** 2  # tr(BᵀB · AAᵀ) = ‖BA‖²_F (both symmetric)
    if total <= 0.0:
        return None
    p = U.to(torch.float64).T @ b
    q = V.to(torch.float64).T @ a.T
    left = ((p @ gram_a) * p).sum(1) * scale ** 2
    right = ((q @ gram_b) * q).sum(1) * scale ** 2
    zero = left.new_zeros(1)
    return torch.cat([zero, left.cumsum(0)]) / total, torch.cat([zero, right.cumsum(0)]) / total


def at_fractions(curve: Any, fractions: Sequence[float] = SPECTRUM_FRACTIONS) -> list[float]:
    """A curve over k = 0..n read at k = f·n for each fraction f (linear between integers)."""
    import numpy as np

    values = np.asarray(curve, dtype=np.float64)
    n = len(values) - 1
    return [float(v) for v in np.interp(np.asarray(fractions) * n, np.arange(n + 1), values)]


def fraction_reaching(curve: Sequence[float], level: float, fractions: Sequence[float] = SPECTRUM_FRACTIONS) -> float | None:
    """The smallest k/n at which a curve sampled on `fractions` reaches `level` (linear between
    samples); None if it never does."""
    for i, value in enumerate(curve):
        if value >= level:
            if i == 0:
                return float(fractions[0])
            lo, hi = curve[i - 1], value
            return float(fractions[i - 1] + (fractions[i] - fractions[i - 1]) * (level - lo) / (hi - lo))
    return None


@dataclass
class LayerSpectrum:
    """One adapted layer's curves on the k/n grid: W0's, and ΔW's (mean over the LoRAs) left/right."""

    name: str
    module_type: str | None
    shape: tuple[int, int]
    w0: list[float]
    delta_left: list[float]
    delta_right: list[float]
    n_loras: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "module_type": self.module_type, "shape": list(self.shape), "w0": self.w0,
                "delta_left": self.delta_left, "delta_right": self.delta_right, "n_loras": self.n_loras}


def layer_spectrum(name: str, W0: torch.Tensor, deltas: Sequence[tuple[torch.Tensor, torch.Tensor, float]],
                   fractions: Sequence[float] = SPECTRUM_FRACTIONS) -> LayerSpectrum | None:
    """The curves of one layer: W0's SVD (float32, on W0's device), then `w0_energy_curve` and the
    mean over non-zero ΔWs (B, A, scale) of `delta_energy_curves`. None when every ΔW is zero."""
    import torch

    from .lora_io import module_type

    U, S, Vh = torch.linalg.svd(W0.to(torch.float32), full_matrices=False)
    U, V = U.double().cpu(), Vh.T.double().cpu()
    left, right = [], []
    for B, A, scale in deltas:
        curves = delta_energy_curves(U, V, B, A, scale)
        if curves is not None:
            left.append(at_fractions(curves[0], fractions))
            right.append(at_fractions(curves[1], fractions))
    if not left:
        return None
    return LayerSpectrum(name, module_type(name), (int(W0.shape[0]), int(W0.shape[1])),
                         at_fractions(w0_energy_curve(S.cpu()), fractions), _mean_rows(left), _mean_rows(right), len(left))


def _mean_rows(rows: Sequence[Sequence[float]]) -> list[float]:
    return [sum(col) / len(col) for col in zip(*rows)]


def spectrum_summary(layers: Sequence[LayerSpectrum], fractions: Sequence[float] = SPECTRUM_FRACTIONS) -> dict[str, Any]:
    """Mean curves over layers (each layer weighs the same), and for each the k/n at which it first
    holds 50 % and 90 % of the energy: the compressibility gap in two numbers."""
    if not layers:
        raise P2EError("no adapted layer with a non-zero ΔW to analyse")
    out: dict[str, Any] = {"fractions": list(fractions)}
    for key in ("w0", "delta_left", "delta_right"):
        curve = _mean_rows([getattr(layer, key) for layer in layers])
        out[key] = curve
        out[f"{key}_k50"] = fraction_reaching(curve, 0.5, fractions)
        out[f"{key}_k90"] = fraction_reaching(curve, 0.9, fractions)
    return out


# -- reading a base's weights, one layer at a time ---------------------------------------------


def base_weight_files(folder: Path) -> dict[str, Path]:
    """{parameter name: safetensors file} of a diffusers model folder: the sharded index's
    weight_map when there is one, else diffusion_pytorch_model.safetensors / model.safetensors."""
    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        try:
            weight_map = json.loads(index[0].read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError) as e:
            raise P2EError(f"cannot read the shard index {index[0]}: {e}") from e
        return {name: folder / file for name, file in weight_map.items()}
    for stem in ("diffusion_pytorch_model", "model"):
        if (folder / f"{stem}.safetensors").is_file():
            from safetensors import safe_open

            path = folder / f"{stem}.safetensors"
            with safe_open(str(path), framework="pt") as f:
                return {key: path for key in f.keys()}
    raise P2EError(f"no safetensors weights in {folder}",
                   hint="p2e reads diffusers folders saved with safe_serialization (model weights as .safetensors)")


def base_weights(folder: Path, names: Iterable[str], device: str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    """Stream weight tensors of a diffusers model folder by parameter name, one at a time (a 14B
    transformer never needs to fit in memory), as float32 on `device`."""
    import torch
    from safetensors import safe_open

    files = base_weight_files(Path(folder))
    for name in names:
        if name not in files:
            raise P2EError(f"the base has no weight {name} in {folder}", hint="the LoRA was made for another base")
        with safe_open(str(files[name]), framework="pt") as f:
            yield name, f.get_tensor(name).to(device=device, dtype=torch.float32)


def plot_spectrum(summary: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """The compressibility-gap figure: mean energy fraction captured by W0's top-k singular
    subspace vs k/n, for W0 itself and for ΔW (left: U_kᵀΔW, right: ΔW V_k), with the isotropic
    k/n line for reference. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_write

    x = summary["fractions"]
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    ax.plot(x, summary["w0"], color="tab:blue", lw=2.2, label="W0 (own top-k subspace)")
    ax.plot(x, summary["delta_left"], color="tab:red", lw=2.2, label="ΔW in W0's top-k left subspace")
    ax.plot(x, summary["delta_right"], color="tab:orange", lw=1.8, ls="--", label="ΔW in W0's top-k right subspace")
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="isotropic (k/n)")
    ax.set_xlabel("k / min(out, in)")
    ax.set_ylabel(r"fraction of energy $\|\cdot\|_F^2$ captured")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "compressibility gap: W0 vs LoRA updates", fontsize=10)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
