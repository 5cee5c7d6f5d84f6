import pytest
import torch

from p2e_cli.hypernet.model import HypernetConfig, Hypernetwork, LayerSpec, cosine_basis
from p2e_cli.metrics import delta_nmse

LAYERS = [LayerSpec("blocks.0.attn1.to_q", "self_q", 0, 8, 8), LayerSpec("blocks.0.ffn.net.0.proj", "ffn_in", 0, 16, 8),
          LayerSpec("blocks.1.ffn.net.2", "ffn_out", 1, 8, 16)]


def weights():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s.out_features, s.in_features, generator=g) for s in LAYERS]


@pytest.mark.parametrize("overrides", [{}, {"tokenize": "half"}, {"conditioning": "noise"}, {"conditioning": "none"},
                                       {"design": "ensemble"}, {"queries": 4}])
def test_one_pass_writes_factors_of_every_layer(overrides):
    torch.manual_seed(0)
    config = HypernetConfig(**{**dict(dim=16, heads=2, queries=8, fusion_layers=1, rank=3, text_dim=12), **overrides})
    net = Hypernetwork(config, LAYERS)
    encoded = net.encode_weights(weights())
    text, mask = torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool)
    factors = net(encoded, text, mask)
    assert [tuple(b.shape) for b, _ in factors] == [(2, 8, 3), (2, 16, 3), (2, 8, 3)]
    assert [tuple(a.shape) for _, a in factors] == [(2, 3, 8), (2, 3, 8), (2, 3, 16)]
    loss = sum(b.pow(2).mean() + a.pow(2).mean() for b, a in factors)
    loss.backward()
    unused = ("compress", "project") if overrides.get("conditioning") == "none" else ()
    missing = [n for n, p in net.named_parameters() if p.grad is None and not any(u in n for u in unused)]
    assert missing == []


def test_prompt_changes_the_output_and_padding_does_not():
    torch.manual_seed(0)
    net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=8, fusion_layers=1, rank=3, text_dim=12), LAYERS)
    torch.nn.init.normal_(net.predictors[0].mixing[-1].weight)  # the head starts at zero: give it a value
    encoded = net.encode_weights(weights())
    text = torch.randn(2, 5, 12)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    b = net(encoded, text, mask)[0][0]
    assert not torch.allclose(b[0], b[1])
    padded = text.clone()
    padded[0, 3:] = 100.0  # masked positions must not matter
    torch.testing.assert_close(net(encoded, padded, mask)[0][0][0], b[0])


def test_token_weights_of_one_equal_the_bool_mask():
    """Mixup feeds float token weights; weight 1 on real tokens and 0 on padding is the plain prompt."""
    torch.manual_seed(0)
    net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=8, fusion_layers=1, rank=3, text_dim=12), LAYERS)
    torch.nn.init.normal_(net.predictors[0].mixing[-1].weight)
    encoded = net.encode_weights(weights())
    text = torch.randn(2, 5, 12)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    for (b1, a1), (b2, a2) in zip(net(encoded, text, mask), net(encoded, text, mask.float())):
        torch.testing.assert_close(b2, b1)
        torch.testing.assert_close(a2, a1)


@pytest.mark.parametrize("design", ["unified", "ensemble"])
def test_streamed_encoding_equals_attention_over_all_weight_tokens_at_once(design):
    """Layer-by-layer encoding (online-softmax partials, merged) is the same computation as the
    queries cross-attending to every weight token in one softmax."""
    torch.manual_seed(0)
    net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=8, fusion_layers=1, rank=3, text_dim=12, design=design), LAYERS)
    w = weights()
    encoded = net.encode_weights(iter(w))  # a generator is enough: one layer at a time
    for predictor, members, got in zip(net.predictors, net.token_groups(), encoded):
        tokens = torch.cat([net.tokenizer(LAYERS[i], w[i]) for i in members])
        torch.testing.assert_close(got["latents"], predictor.compress(predictor.queries.unsqueeze(0), tokens.unsqueeze(0))[0])
        basis = torch.cat([torch.cat([cosine_basis(LAYERS[i].out_features, 16), cosine_basis(LAYERS[i].in_features, 16)])
                           for i in members])
        torch.testing.assert_close(got["features"], predictor.features(tokens) + basis)


def test_narrow_features_and_gradient_checkpointing():
    """feature_dim < dim shrinks the cached per-token features; gradient checkpointing (each
    layer's weight encoding and each fusion layer recomputed in backward) gives the same gradients."""
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=8, fusion_layers=2, rank=3, text_dim=12, feature_dim=4,
                                          gradient_checkpointing=checkpointing), LAYERS)
        encoded = net.encode_weights(weights())
        assert encoded[0]["features"].shape == (sum(s.out_features + s.in_features for s in LAYERS), 4)
        factors = net(encoded, torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(1)), torch.ones(2, 5, dtype=torch.bool))
        sum(b.pow(2).sum() + a.pow(2).sum() for b, a in factors).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_base_encoding_streams_from_safetensors_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    import p2e_cli.canon
    from p2e_cli.hypernet.store import encode_base

    torch.manual_seed(0)
    net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=8, fusion_layers=1, rank=3, text_dim=12), LAYERS)
    w = weights()
    save_file({f"{s.name}.weight": x for s, x in zip(LAYERS, w)}, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    names = [s.name for s in LAYERS]
    cache = tmp_path / "cache" / "enc.safetensors"
    real, read = p2e_cli.canon.base_weights, []

    def failing_after_two(folder, wanted, device="cpu"):
        if len(read) == 2:
            raise KeyboardInterrupt
        read.extend(wanted)
        return real(folder, wanted, device)

    monkeypatch.setattr(p2e_cli.canon, "base_weights", failing_after_two)
    with pytest.raises(KeyboardInterrupt):
        encode_base(net, tmp_path, names, cache)
    assert not cache.exists() and len(list(cache.with_suffix(".parts").iterdir())) == 2
    monkeypatch.setattr(p2e_cli.canon, "base_weights", lambda folder, wanted, device="cpu": (read.extend(wanted), real(folder, wanted))[1])
    encoded = encode_base(net, tmp_path, names, cache)
    assert read == [f"{n}.weight" for n in names]  # each layer read once over both attempts
    assert cache.is_file() and not cache.with_suffix(".parts").exists()
    with torch.no_grad():
        direct = net.encode_weights(w)
    for got, want in zip([encoded, encode_base(net, tmp_path, names, cache)], [direct, direct]):
        for key in want[0]:
            torch.testing.assert_close(got[0][key], want[0][key])


def test_the_head_starts_at_zero_and_every_side_can_express_every_direction():
    """Zero output at init (ΔW = 0: a random head's huge first losses froze Adam), and the token
    features carry an orthogonal cosine basis, so a side's rows span min(tokens, width) directions."""
    torch.manual_seed(0)
    net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=8, fusion_layers=1, rank=3, text_dim=12, feature_dim=16), LAYERS)
    factors = net(weights(), torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool))
    assert all(not b.any() and not a.any() for b, a in factors)
    for n, width in ((8, 16), (16, 16), (16, 8)):
        basis = cosine_basis(n, width).double()
        gram = basis.T @ basis
        k = min(n, width)
        torch.testing.assert_close(gram[:k, :k], n * torch.eye(k, dtype=torch.float64), atol=1e-5, rtol=0)
        assert not gram[k:, k:].any()


def test_the_network_fits_distinct_targets_for_distinct_prompts():
    """Memorising a few unrelated effects is the least a hypernetwork must do (a floor, not the
    failure seen on the tiny library: at this toy size the old head passed too; see the issue notes)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = Hypernetwork(HypernetConfig(dim=32, heads=2, queries=8, fusion_layers=1, rank=2, text_dim=12, feature_dim=16), LAYERS)
    g = torch.Generator().manual_seed(1)
    targets = [(torch.randn(3, s.out_features, 2, generator=g), torch.randn(3, 2, s.in_features, generator=g)) for s in LAYERS]
    text, mask = torch.randn(3, 4, 12, generator=g), torch.ones(3, 4, dtype=torch.bool)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    w = weights()
    for _ in range(300):
        pred = net(w, text, mask)
        loss = sum(((pb - tb).pow(2).mean() + (pa - ta).pow(2).mean()) for (pb, pa), (tb, ta) in zip(pred, targets))
        loss = loss + delta_nmse(pred, targets).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert float(delta_nmse(net(w, text, mask), targets).max()) < 0.05


def test_the_recipe_model_section_is_the_network_config():
    """schemas.HypernetModel (the recipe's `model:`) names HypernetConfig's architecture keys with the
    same defaults, so a recipe key reaches the network without a field-by-field copy."""
    import dataclasses

    from p2e_cli.hypernet.model import HypernetConfig
    from p2e_cli.schemas import HypernetModel

    network = {f.name: f.default for f in dataclasses.fields(HypernetConfig)}
    for field in dataclasses.fields(HypernetModel):
        assert field.name in network and network[field.name] == HypernetModel().__getattribute__(field.name), field.name
    assert HypernetModel.RETIRED.keys() == HypernetConfig.RETIRED.keys()
