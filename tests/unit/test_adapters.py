import torch
from torch import nn

from p2e_cli import adapters


def test_stacked_lora_routes_each_sample_to_its_adapter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    layers = adapters.inject(model, ["0"], seeds=[1, 2, 3], rank=2, alpha=4.0)
    with torch.no_grad():
        for layer in layers.values():
            layer.B.normal_()
    base = layers["0"].base
    x = torch.randn(3, 4, 6)
    route = torch.tensor([2, 0, 1])
    weight = torch.tensor([1.0, 0.0, 0.5])
    with adapters.routed(layers, route, weight):
        y = model(x)
    for b in range(3):
        a, bb = layers["0"].A[route[b]], layers["0"].B[route[b]]
        expected = base(x[b]) + weight[b] * (4.0 / 2) * x[b] @ a.T @ bb.T
        torch.testing.assert_close(y[b], expected)
    torch.testing.assert_close(model(x), base(x))  # outside `routed`: the bare base


def test_supplied_factors_apply_per_sample_and_carry_gradients_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 3))
    layers = adapters.inject(model, ["0", "2"], seeds=[1], rank=1, alpha=1.0)
    factors = [(torch.randn(2, 5, 3, requires_grad=True), torch.randn(2, 3, 6, requires_grad=True)),
               (torch.randn(2, 3, 3, requires_grad=True), torch.randn(2, 3, 5, requires_grad=True))]
    x = torch.randn(2, 4, 6)
    with adapters.supplied(layers, factors):
        y = model(x)
    for b in range(2):  # sample b: W0 + B_b·A_b in every layer, no alpha/r
        dense = [layers[n].base.weight + f[0][b] @ f[1][b] for n, f in zip(("0", "2"), factors)]
        h = torch.nn.functional.gelu(x[b] @ dense[0].T + layers["0"].base.bias)
        torch.testing.assert_close(y[b], h @ dense[1].T + layers["2"].base.bias)
    y.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for f in factors for t in f)
    assert all(layer.A.grad is None for layer in layers.values())  # the adapters' own factors are not used
    torch.testing.assert_close(model(x), nn.Sequential(layers["0"].base, nn.GELU(), layers["2"].base)(x))  # after: the base


def test_inject_freezes_base_and_remove_restores_it():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    original = model[1]
    layers = adapters.inject(model, ["1"], seeds=[1], rank=2, alpha=2.0)
    assert [p for p in model.parameters() if p.requires_grad] == adapters.parameters(layers)
    assert torch.count_nonzero(layers["1"].B) == 0  # peft's init: B = 0, so ΔW starts at 0
    adapters.remove(model, layers)
    assert model[1] is original


def test_load_factors_folds_a_different_alpha_into_b():
    model = nn.Sequential(nn.Linear(4, 3))
    layers = adapters.inject(model, ["0"], seeds=[1], rank=2, alpha=2.0)
    a, b = torch.randn(2, 4), torch.randn(3, 2)
    adapters.load_factors(layers, 0, {"0": (a, b)}, alpha=8.0)  # source ΔW = (8/2)·B·A
    layer = layers["0"]
    delta = (layer.alpha / layer.rank) * layer.B[0] @ layer.A[0]
    torch.testing.assert_close(delta, 4.0 * b @ a)


def test_an_adapter_starts_the_same_whatever_shares_its_layer():
    one = adapters.inject(nn.Sequential(nn.Linear(4, 3)), ["0"], seeds=[7], rank=2, alpha=2.0)
    three = adapters.inject(nn.Sequential(nn.Linear(4, 3)), ["0"], seeds=[5, 7, 9], rank=2, alpha=2.0)
    torch.testing.assert_close(one["0"].A[0], three["0"].A[1])
    assert one["0"].A.abs().max() <= 0.5  # U(±1/√in), in = 4
