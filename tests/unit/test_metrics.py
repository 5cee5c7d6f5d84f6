"""Effect identification distance (p2e_cli.metrics): tolerates grain, not a missing motion."""

import numpy as np
import pytest

from p2e_cli import effects as fx
from p2e_cli.metrics import identification_distances, identification_rank, low_pass
from p2e_cli.photos import load_photo


@pytest.fixture(scope="module")
def candidates():
    image = load_photo("coffee", 64)  # a held-out photo
    names = fx.effect_names() + ["still"]
    truths = np.stack([fx.render(n, image, 17) for n in names[:-1]] + [np.repeat(image[None], 17, 0)])
    return names, truths


def ramp(frames: int = 17) -> np.ndarray:
    return np.linspace(0, 1, frames).reshape(frames, 1, 1, 1)


def nearest(names, truths, clip) -> str:
    return names[int(np.argmin(identification_distances(np.clip(clip, 0, 255), truths)))]


def test_grain_does_not_hide_a_spin(candidates):
    names, truths = candidates
    spin = truths[names.index("spin-cw")].astype(np.float64)
    grainy = spin + np.random.default_rng(0).normal(0, 40, spin.shape)  # stronger than the world's grain
    grainy[0] = spin[0]
    assert identification_rank(np.clip(grainy, 0, 255), truths, names.index("spin-cw")) == 1


@pytest.mark.parametrize("failure", ["blurred", "darkened", "dissolved"])
def test_a_render_that_blurs_darkens_or_dissolves_instead_of_spinning_is_not_spin(candidates, failure):
    names, truths = candidates
    still = truths[names.index("still")].astype(np.float64)
    t = ramp()
    rng = np.random.default_rng(1)
    clip = {"blurred": np.stack([low_pass(f, 4.0 * s) for f, s in zip(still, t.ravel())]),
            "darkened": still * (1 - 0.7 * t),
            # the old world's renders: a grainy dissolve toward brown mush
            "dissolved": (1 - 0.8 * t) * still + 0.8 * t * np.array([110.0, 80, 50]) + rng.normal(0, 15, still.shape)}[failure]
    clip[0] = still[0]
    rank = identification_rank(np.clip(clip, 0, 255), truths, names.index("spin-cw"))
    assert rank > 5
    assert not nearest(names, truths, clip).startswith("spin")


def test_a_darkened_spin_is_not_identified_as_spin(candidates):
    names, truths = candidates
    dark = truths[names.index("spin-cw")].astype(np.float64) * 0.6
    assert identification_rank(dark, truths, names.index("spin-cw")) > 1


def test_distance_needs_matching_shapes(candidates):
    names, truths = candidates
    with pytest.raises(ValueError, match="shape"):
        identification_distances(truths[0][:5], truths)


def test_identify_and_summarize_rank_real_ground_truth_first_and_a_still_render_nowhere():
    from p2e_cli import identify

    rows = []
    for name in ("spin-cw", "zoom-in", "hue-blue", "spin-fade-black"):
        effect = fx.get_effect(name)
        exact = {p: identify.candidates(p, 32, 9)[identify.candidate_names().index(name)] for p in identify.PHOTOS}
        still = {p: identify.candidates(p, 32, 9)[-1] for p in identify.PHOTOS}  # a render that does nothing
        rows.append({"effect": name, "split": effect.split, "ident_ref": identify.identify(name, exact),
                     "ident_base": identify.identify(name, still)})
    summary = {slot: identify.summarize(rows, slot) for slot in ("ref", "base")}
    assert summary["ref"]["all"]["top1"] == 1.0 and summary["ref"]["all"]["groups"]["geometric"]["effects"] == 2
    assert summary["ref"]["heldout"]["groups"]["composition"]["top1"] == 1.0
    assert summary["base"]["all"]["top1"] == 0.0
    assert rows[0]["ident_base"]["nearest"] == ["still", "still"]


def test_the_nmse_matrix_is_delta_nmse_of_every_pair():
    """delta_nmse_matrix (all pairs by Gram matmuls) against delta_nmse one pair at a time, other ranks."""
    import torch

    from p2e_cli.metrics import delta_nmse, delta_nmse_matrix

    g = torch.Generator().manual_seed(0)
    shapes = [(24, 16), (16, 24), (32, 32)]
    refs = [(torch.randn(6, o, 3, generator=g), torch.randn(6, 3, i, generator=g)) for o, i in shapes]
    pred = [(torch.randn(4, o, 2, generator=g), torch.randn(4, 2, i, generator=g)) for o, i in shapes]
    matrix = delta_nmse_matrix(pred, refs)
    assert matrix.shape == (4, 6)
    for i in range(4):
        for j in range(6):
            pair = delta_nmse([(b[i:i + 1], a[i:i + 1]) for b, a in pred], [(b[j:j + 1], a[j:j + 1]) for b, a in refs])
            assert torch.allclose(matrix[i, j], pair[0], rtol=1e-4), (i, j)


def test_delta_retrieval_catches_a_network_that_writes_zeros_or_ignores_the_prompt():
    """Retrieval (issue 30's test of a hypernetwork): prediction i must be nearest reference i. A
    faithful but noisy network passes; one that writes zeros, or one LoRA for every prompt, fails."""
    import torch

    from p2e_cli.metrics import delta_retrieval_ranks

    g = torch.Generator().manual_seed(0)
    k, shapes = 40, [(24, 16), (16, 24), (32, 32)]
    refs = [(torch.randn(k, o, 2, generator=g), torch.randn(k, 2, i, generator=g)) for o, i in shapes]

    def top5(pred):
        return float((delta_retrieval_ranks(pred, refs) <= 5).float().mean())

    noisy = [(b + 0.3 * torch.randn(b.shape, generator=g), a + 0.3 * torch.randn(a.shape, generator=g)) for b, a in refs]
    assert top5(refs) == 1.0 and top5(noisy) >= 0.9
    zeros = [(torch.zeros_like(b), torch.zeros_like(a)) for b, a in refs]
    assert top5(zeros) < 0.5  # every reference ties at NMSE 1: the own one counts last
    same = [(b[:1].expand_as(b), a[:1].expand_as(a)) for b, a in noisy]  # one LoRA for every prompt
    assert top5(same) < 0.5
    shuffled = [(b.roll(1, 0), a.roll(1, 0)) for b, a in refs]  # every prompt gets its neighbour's LoRA
    assert top5(shuffled) < 0.5
