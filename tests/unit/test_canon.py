"""canon.py: SVD-canonical factors, mixing and the spectrum curves, against dense float64 references."""

from __future__ import annotations

import pytest
import torch

from p2e_cli.canon import (at_fractions, canonical_factors, canonical_lora, delta_energy_curves, fraction_reaching,
                           is_canonical, layer_spectrum, low_rank_inner, low_rank_norm, low_rank_svd, mix_factors, mix_loras, relative_error,
                           spectrum_summary, w0_energy_curve)
from p2e_cli.errors import P2EError
from p2e_cli.lora_io import LoraFile, LoraLayer

# (out, in, r): square, tall, wide, out < r, in < r, both < r, vectors, and a bigger one
SHAPES = [(8, 6, 3), (6, 8, 3), (12, 12, 4), (3, 10, 5), (10, 3, 5), (2, 2, 4), (1, 50, 4), (50, 1, 4), (1, 1, 1),
          (300, 200, 16), (64, 500, 32)]
ALPHAS = [None, 1.0, 16.0, 0.37]  # None: alpha = r


def factors(out, inp, r, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, r, generator=g, dtype=dtype), torch.randn(r, inp, generator=g, dtype=dtype)


def rel(x, y):
    return float((x - y).norm() / y.norm())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("out,inp,r", SHAPES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_canonical_keeps_delta_w_to_1e10(out, inp, r, alpha):
    B, A = factors(out, inp, r)
    alpha = float(r) if alpha is None else alpha
    b, a = canonical_factors(B, A, alpha, r)
    assert b.dtype == a.dtype == torch.float64 and b.shape == (out, r) and a.shape == (r, inp)
    assert rel(b @ a, (alpha / r) * B @ A) < 1e-10


@pytest.mark.parametrize("out,inp,r", SHAPES)
def test_canonical_form_is_u_sqrt_s_and_s_sqrt_vt(out, inp, r):
    b, a = canonical_factors(*factors(out, inp, r, seed=1), 3.0)
    s = torch.linalg.svdvals(b @ a)
    gram_b, gram_a = b.T @ b, a @ a.T
    top = float(s[0])
    assert torch.allclose(gram_b, torch.diag(torch.diagonal(gram_b)), atol=1e-12 * top)
    assert torch.allclose(gram_a, gram_b, atol=1e-12 * top)
    m = min(out, inp, r)
    assert torch.allclose(torch.diagonal(gram_b)[:m], s[:m], rtol=1e-10, atol=1e-12 * top)
    assert (torch.diagonal(gram_b)[m:] == 0).all()  # pads beyond min(out, in) are exact zeros
    nonzero = torch.diagonal(gram_b) > 0
    pivots = b[b.abs().argmax(0), torch.arange(r)]
    assert (pivots[nonzero] > 0).all()  # the sign rule: largest-|entry| of each column of B (and U) positive


@pytest.mark.parametrize("out,inp,r", SHAPES)
@pytest.mark.parametrize("alpha", [None, 0.37])
def test_canonicalizing_twice_is_bitwise_idempotent(out, inp, r, alpha):
    B, A = factors(out, inp, r, seed=2)
    b, a = canonical_factors(B, A, float(r) if alpha is None else alpha)
    assert is_canonical(b, a, float(r))
    b2, a2 = canonical_factors(b, a, float(r))
    assert torch.equal(b, b2) and torch.equal(a, a2)
    # stored as float32 (what files hold), canonicalizing again gives back the same bits
    b32, a32 = b.float(), a.float()
    b3, a3 = canonical_factors(b32, a32, float(r))
    assert torch.equal(b3.float(), b32) and torch.equal(a3.float(), a32)


@pytest.mark.parametrize("out,inp,r", SHAPES)
def test_gauge_invariance_b_m_and_m_inverse_a(out, inp, r):
    B, A = factors(out, inp, r, seed=3)
    g = torch.Generator().manual_seed(4)
    M = torch.randn(r, r, generator=g, dtype=torch.float64) + 2 * torch.eye(r, dtype=torch.float64)
    b, a = canonical_factors(B, A, 5.0)
    b2, a2 = canonical_factors(B @ M, torch.linalg.solve(M, A), 5.0)
    scale = max(float(b.abs().max()), float(a.abs().max()))
    assert float((b2 - b).abs().max()) < 1e-8 * scale and float((a2 - a).abs().max()) < 1e-8 * scale


@pytest.mark.parametrize("out,inp,r", SHAPES)
def test_sign_fix_is_stable_under_sign_flips_and_permutations(out, inp, r):
    B, A = factors(out, inp, r, seed=5)
    b, a = canonical_factors(B, A, 2.0)
    g = torch.Generator().manual_seed(6)
    for _ in range(3):
        d = torch.where(torch.rand(r, generator=g) < 0.5, -1.0, 1.0).double()
        perm = torch.randperm(r, generator=g)
        b2, a2 = canonical_factors((B * d)[:, perm], (d[:, None] * A)[perm], 2.0)
        assert torch.allclose(b2, b, rtol=0, atol=1e-10 * float(b.abs().max()))
        assert torch.allclose(a2, a, rtol=0, atol=1e-10 * float(a.abs().max()))
    b3, a3 = canonical_factors(-B, -A, 2.0)
    assert torch.allclose(b3, b, rtol=0, atol=1e-12 * float(b.abs().max()))


def test_a_canonical_pair_with_a_flipped_pair_is_not_canonical_and_gets_fixed():
    b, a = canonical_factors(*factors(20, 30, 4, seed=7), 4.0)
    b_flip, a_flip = b.clone(), a.clone()
    b_flip[:, 1] *= -1
    a_flip[1] *= -1
    assert not is_canonical(b_flip, a_flip, 4.0)
    b2, a2 = canonical_factors(b_flip, a_flip, 4.0)
    assert torch.allclose(b2, b, rtol=0, atol=1e-12) and torch.allclose(a2, a, rtol=0, atol=1e-12)


def test_random_factors_and_scaled_alpha_are_not_canonical():
    B, A = factors(10, 12, 3)
    assert not is_canonical(B, A, 3.0)
    b, a = canonical_factors(B, A, 3.0)
    assert not is_canonical(b, a, 6.0)  # alpha must equal r


def test_rank_deficient_inputs_give_exact_zero_pairs():
    g = torch.Generator().manual_seed(8)
    # rank 2 product from rank-5 factors: two independent directions, copied and combined
    base_b = torch.randn(30, 2, generator=g, dtype=torch.float64)
    B = torch.cat([base_b, base_b @ torch.randn(2, 3, generator=g, dtype=torch.float64)], dim=1)
    A = torch.randn(5, 40, generator=g, dtype=torch.float64)
    A[2:] = 0.0
    b, a = canonical_factors(B, A, 5.0)
    assert rel(b @ a, B @ A) < 1e-12
    assert (b[:, 2:] == 0).all() and (a[2:] == 0).all() and not torch.signbit(b[:, 2:]).any()
    assert (b[:, :2] != 0).any(dim=0).all()
    b2, a2 = canonical_factors(b, a, 5.0)
    assert torch.equal(b2, b) and torch.equal(a2, a)


def test_zero_update_gives_zero_factors():
    # a freshly initialised peft LoRA has B = 0
    B = torch.zeros(16, 4, dtype=torch.float64)
    A = factors(16, 9, 4)[1]
    b, a = canonical_factors(B, A, 8.0)
    assert (b == 0).all() and (a == 0).all() and not torch.signbit(b).any() and not torch.signbit(a).any()
    assert is_canonical(b, a, 4.0)


def test_float32_and_bf16_inputs_are_computed_in_float64():
    B, A = factors(40, 24, 4, dtype=torch.float32)
    b, a = canonical_factors(B, A, 2.0)
    assert b.dtype == torch.float64
    assert rel(b @ a, 0.5 * B.double() @ A.double()) < 1e-10
    b16, a16 = canonical_factors(B.bfloat16(), A.bfloat16(), 2.0)
    assert rel(b16 @ a16, 0.5 * B.bfloat16().double() @ A.bfloat16().double()) < 1e-10


def test_bad_factor_shapes_are_p2e_errors():
    B, A = factors(8, 6, 3)
    with pytest.raises(P2EError, match="do not fit"):
        canonical_factors(B, A.T, 1.0)
    with pytest.raises(P2EError, match="rank 4"):
        canonical_factors(B, A, 1.0, r=4)


def test_low_rank_svd_and_norms_match_dense():
    B, A = factors(70, 50, 6, seed=9)
    U, S, V = low_rank_svd(B, A, 0.5)
    assert torch.allclose(S, torch.linalg.svdvals(0.5 * B @ A)[:6], rtol=1e-12)
    assert rel(U @ torch.diag(S) @ V.T, 0.5 * B @ A) < 1e-12
    B2, A2 = factors(70, 50, 3, seed=10)
    dense = float((0.5 * B @ A - 2 * B2 @ A2).norm() / (0.5 * B @ A).norm())
    assert relative_error(B, A, 0.5, B2, A2, 2.0) == pytest.approx(dense, rel=1e-9)
    assert relative_error(B, A, 0.5, B, A, 0.5) < 1e-13


def test_mix_is_exact_at_the_summed_rank_and_best_fit_below():
    B1, A1 = factors(40, 30, 4, seed=11)
    B2, A2 = factors(40, 30, 3, seed=12)
    target = 0.6 * 2.0 * B1 @ A1 - 0.4 * B2 @ A2
    b, a, s = mix_factors([(B1, A1, 0.6 * 2.0), (B2, A2, -0.4)], rank=7)
    assert rel(b @ a, target) < 1e-10 and is_canonical(b, a, 7.0)
    b, a, s = mix_factors([(B1, A1, 0.6 * 2.0), (B2, A2, -0.4)], rank=3)
    U, S, Vh = torch.linalg.svd(target)
    best = U[:, :3] @ torch.diag(S[:3]) @ Vh[:3]
    assert rel(b @ a, best) < 1e-10 and b.shape == (40, 3)
    assert float((s[:3] ** 2).sum() / (s ** 2).sum()) == pytest.approx(float((S[:3] ** 2).sum() / (S ** 2).sum()))


def _lora(shapes, rank, seed, alpha):
    g = torch.Generator().manual_seed(seed)
    return LoraFile({name: LoraLayer(torch.randn(rank, inp, generator=g), torch.randn(out, rank, generator=g), alpha)
                     for name, (out, inp) in shapes.items()})


def test_canonical_lora_keeps_diffs_and_sets_alpha_to_rank():
    lora = _lora({"blocks.0.attn1.to_q": (12, 12), "blocks.0.ffn.net.0.proj": (20, 12)}, 4, 0, 2.0)
    lora.diffs["blocks.0.attn1.to_q.bias"] = torch.ones(12)
    canonical = canonical_lora(lora)
    for name, layer in canonical.layers.items():
        source = lora.layers[name]
        assert layer.alpha == 4.0 and layer.A.dtype == torch.float32
        assert rel(layer.delta().double(), source.delta().double()) < 1e-6  # float32 storage
        assert relative_error(source.B, source.A, source.scale, layer.B, layer.A, 1.0) < 1e-6
    assert torch.equal(canonical.diffs["blocks.0.attn1.to_q.bias"], torch.ones(12))
    again = canonical_lora(canonical)
    assert all(torch.equal(again.layers[n].A, canonical.layers[n].A) and torch.equal(again.layers[n].B, canonical.layers[n].B)
               for n in canonical.layers)


def test_mix_loras_weights_layers_missing_from_one_lora_and_sums_diffs():
    shapes = {"blocks.0.attn1.to_q": (12, 12), "blocks.0.attn1.to_k": (12, 12)}
    one = _lora(shapes, 4, 1, 8.0)
    two = _lora({"blocks.0.attn1.to_q": (12, 12)}, 2, 2, 2.0)
    one.diffs["blocks.0.attn1.to_q.bias"] = torch.ones(12)
    two.diffs["blocks.0.attn1.to_q.bias"] = torch.full((12,), 2.0)
    mixed, stats = mix_loras([(one, 0.6), (two, 0.4)], rank=6)
    q = mixed.layers["blocks.0.attn1.to_q"]
    expected = 0.6 * one.layers["blocks.0.attn1.to_q"].delta() + 0.4 * two.layers["blocks.0.attn1.to_q"].delta()
    assert q.alpha == 6.0 and rel(q.delta().double(), expected.double()) < 1e-6
    k = mixed.layers["blocks.0.attn1.to_k"]
    assert rel(k.delta().double(), 0.6 * one.layers["blocks.0.attn1.to_k"].delta().double()) < 1e-6
    assert torch.allclose(mixed.diffs["blocks.0.attn1.to_q.bias"], torch.full((12,), 1.4))
    assert stats["kept_energy"] == pytest.approx(1.0) and stats["rank"] == 6
    _, truncated = mix_loras([(one, 0.6), (two, 0.4)])
    assert truncated["rank"] == 4 and truncated["kept_energy"] < 1.0
    with pytest.raises(P2EError, match="different shapes"):
        mix_loras([(one, 1.0), (_lora({"blocks.0.attn1.to_q": (12, 8)}, 2, 3, 2.0), 1.0)])


def test_spectrum_curves_of_a_delta_inside_w0s_top_subspace():
    g = torch.Generator().manual_seed(13)
    U, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    S = torch.tensor([2.0 ** -i for i in range(20)], dtype=torch.float64)
    W0 = U @ torch.diag(S) @ V.T
    w0 = w0_energy_curve(S)
    assert w0[0] == 0 and float(w0[-1]) == pytest.approx(1.0) and float(w0[1]) == pytest.approx(0.75, rel=1e-6)
    # ΔW living in W0's top-3 left and top-3 right directions: all its energy by k = 3
    B = U[:, :3] @ torch.randn(3, 2, generator=g, dtype=torch.float64)
    A = torch.randn(2, 3, generator=g, dtype=torch.float64) @ V[:, :3].T
    left, right = delta_energy_curves(U, V, B, A, 0.5)
    assert float(left[3]) == pytest.approx(1.0) and float(right[3]) == pytest.approx(1.0)
    assert float(left[2]) < 1.0 and torch.all(left[1:] >= left[:-1] - 1e-12)
    dense = 0.5 * B @ A
    assert float(left[2]) == pytest.approx(float((U[:, :2].T @ dense).norm() ** 2 / dense.norm() ** 2))
    assert delta_energy_curves(U, V, torch.zeros(20, 2, dtype=torch.float64), A, 1.0) is None
    layer = layer_spectrum("blocks.0.attn1.to_q", W0.float(), [(B, A, 0.5)])
    assert layer.module_type == "self_q" and layer.shape == (20, 20)
    assert layer.delta_left[-1] == pytest.approx(1.0) and layer.w0[-1] == pytest.approx(1.0, abs=1e-5)


def test_isotropic_delta_follows_k_over_n_and_the_summary_reports_the_gap():
    g = torch.Generator().manual_seed(14)
    W0 = torch.randn(64, 64, generator=g) @ torch.diag(torch.logspace(0, -3, 64))
    deltas = [(torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g), 1.0)]
    layer = layer_spectrum("blocks.0.ffn.net.2", W0, deltas)
    assert layer.delta_left[10] == pytest.approx(0.5, abs=0.1)  # k/n = 0.5 -> about half
    summary = spectrum_summary([layer])
    assert summary["w0_k90"] < 0.2 < 0.7 < summary["delta_left_k90"]
    assert at_fractions([0.0, 1.0], [0.0, 0.25, 1.0]) == [0.0, 0.25, 1.0]
    assert fraction_reaching([0.0, 0.4, 0.8, 1.0], 0.6, [0.0, 0.5, 0.75, 1.0]) == pytest.approx(0.625)
    assert fraction_reaching([0.0, 0.1], 0.9, [0.0, 1.0]) is None
    with pytest.raises(P2EError):
        spectrum_summary([])


@pytest.mark.parametrize("out,inp,r", SHAPES)
def test_low_rank_inner_and_norm_match_dense_products(out, inp, r):
    b1, a1 = factors(out, inp, r, seed=1)
    b2, a2 = factors(out, inp, r + 1, seed=2)
    dense = float((b1 @ a1 * (b2 @ a2)).sum())
    assert float(low_rank_inner(b1, a1, b2, a2)) == pytest.approx(dense, rel=1e-9, abs=1e-12)
    assert low_rank_norm(b1, a1) == pytest.approx(float(torch.linalg.matrix_norm(b1 @ a1)), rel=1e-9, abs=1e-12)
    # batched over a leading dim: each row on its own
    b3, a3 = factors(out, inp, r + 1, seed=3)
    batched = low_rank_inner(torch.stack([b1, b1]), torch.stack([a1, a1]), torch.stack([b2, b3]), torch.stack([a2, a3]))
    assert batched.tolist() == pytest.approx([dense, float(low_rank_inner(b1, a1, b3, a3))], rel=1e-12)


def test_mean_factors_is_the_canonical_form_of_the_mean_delta():
    from p2e_cli.canon import mean_factors

    g = torch.Generator().manual_seed(3)
    pairs = [(torch.randn(12, 2, generator=g), torch.randn(2, 9, generator=g)) for _ in range(3)]
    b, a = mean_factors(pairs, 6)
    mean = sum(B.double() @ A.double() for B, A in pairs) / 3
    assert b.shape == (12, 6) and is_canonical(b, a, 6.0)
    torch.testing.assert_close(b @ a, mean, atol=1e-10, rtol=1e-10)  # rank 6 holds all of it
