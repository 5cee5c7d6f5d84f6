"""Stacked LoRA adapters for training: n LoRAs per linear layer, chosen per sample.

    y = W0·x + Σ_b  w_b · (alpha/r) · B[e_b] · A[e_b] · x_b

where e_b is the adapter of sample b and w_b its weight (0 = the bare base), or, inside
`supplied`, y = W0·x + B_b · A_b · x_b with factors given per sample from outside (a hypernetwork's
output: gradients flow back into whatever computed them). With n = 1 this is
an ordinary LoRA layer (same initialisation as peft: A Kaiming-uniform, B zero); with n > 1 one
forward/backward pass trains several effects' LoRAs at once, which is how the reference library
is built without wasting a small model's CPU. Files written from these factors are ordinary LoRA
files (p2e_cli.lora_io) that diffusers/peft load.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class StackedLoRA(nn.Module):
    def __init__(self, base: nn.Linear, seeds: list[int], rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.rank, self.alpha = rank, alpha
        # peft's default init: A ~ kaiming_uniform(a=√5) = U(±1/√in), B = 0; one seed per adapter so
        # an adapter starts the same whichever other adapters share the layer
        bound = 1 / math.sqrt(base.in_features)
        self.A = nn.Parameter(torch.stack([
            (torch.rand(rank, base.in_features, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * bound
            for seed in seeds]))
        self.B = nn.Parameter(torch.zeros(len(seeds), base.out_features, rank))
        self.route: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self.given: tuple[torch.Tensor, torch.Tensor] | None = None  # per-sample (B, A), ΔW = B·A (supplied)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.given is not None:
            b, a = self.given
            scale = None
        elif self.route is None:
            return y
        else:
            a, b = self.A[self.route.to(self.A.device)], self.B[self.route.to(self.A.device)]  # (batch, r, in), (batch, out, r)
            scale = (self.weight.to(x.device, x.dtype) * (self.alpha / self.rank)).view(-1, 1, 1)
        h = torch.einsum("bni,bri->bnr", x, a.to(x.dtype))
        delta = torch.einsum("bnr,bor->bno", h, b.to(x.dtype))
        return y + (delta if scale is None else delta * scale)


def inject(model: nn.Module, names: list[str], seeds: list[int], rank: int, alpha: float) -> dict[str, StackedLoRA]:
    """Wrap each named nn.Linear of `model` in a StackedLoRA with one adapter per seed (in place);
    freeze everything else."""
    model.requires_grad_(False)
    layers = {}
    for index, name in enumerate(names):
        linear = model.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{name} is {type(linear).__name__}, not nn.Linear")
        layer = StackedLoRA(linear, [seed + index for seed in seeds], rank, alpha).to(linear.weight.device)
        model.set_submodule(name, layer)
        layers[name] = layer
    return layers


def remove(model: nn.Module, layers: dict[str, StackedLoRA]) -> None:
    """Undo `inject`: put the original linear layers back."""
    for name, layer in layers.items():
        model.set_submodule(name, layer.base)


@contextmanager
def routed(layers: dict[str, StackedLoRA], route: torch.Tensor, weight: torch.Tensor | None = None) -> Iterator[None]:
    """Within the block, sample b uses adapter route[b] at weight[b] (default 1)."""
    weight = torch.ones(len(route)) if weight is None else weight
    for layer in layers.values():
        layer.route, layer.weight = route, weight
    try:
        yield
    finally:
        for layer in layers.values():
            layer.route = layer.weight = None


@contextmanager
def supplied(layers: dict[str, StackedLoRA], factors: list[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Within the block, sample b of every layer uses the given factors: per layer, in `layers`
    order, (B (batch, out, r), A (batch, r, in)) with ΔW_b = B_b·A_b (no alpha/r), e.g. what a
    hypernetwork just wrote, so the loss of the adapted model trains the hypernetwork."""
    for layer, given in zip(layers.values(), factors, strict=True):
        layer.given = given
    try:
        yield
    finally:
        for layer in layers.values():
            layer.given = None


def factors(layers: dict[str, StackedLoRA], index: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Adapter `index` as {module: (A (r×in), B (out×r))}, detached float32 copies."""
    return {name: (layer.A[index].detach().float().clone(), layer.B[index].detach().float().clone())
            for name, layer in layers.items()}


@torch.no_grad()
def load_factors(layers: dict[str, StackedLoRA], index: int, values: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 alpha: float | None = None) -> None:
    """Set adapter `index` from {module: (A, B)} (e.g. a predicted LoRA for fine-tuning). A source
    alpha other than the layers' own is folded into B so ΔW is preserved exactly."""
    for name, layer in layers.items():
        a, b = values[name]
        if a.shape != layer.A.shape[1:] or b.shape != layer.B.shape[1:]:
            raise ValueError(f"{name}: factors {tuple(b.shape)}x{tuple(a.shape)} do not fit rank {layer.rank} "
                             f"layer {tuple(layer.B.shape[1:])}x{tuple(layer.A.shape[1:])}")
        ratio = 1.0 if alpha is None else alpha / layer.alpha
        layer.A[index].copy_(a)
        layer.B[index].copy_(b * ratio)


def parameters(layers: dict[str, StackedLoRA]) -> list[nn.Parameter]:
    return [p for layer in layers.values() for p in (layer.A, layer.B)]
