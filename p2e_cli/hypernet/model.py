"""The weight-driven hypernetwork of Prompt2Effect, in one file, readable top to bottom.

    W0 of every adapted layer ──► row tokens (out × in) and column tokens (in × out), full rank
        + layer / module-type / row-or-column embeddings
    n learnable queries ──cross-attend──► weight tokens            (compression; no prompt:
    every token ──MLP──► its feature g_t                            computed once per base, cached)
    [latents ; prompt tokens] ──Transformer──► fused latents         (fusion with the effect prompt)
    one query per (layer, rows|columns) ──cross-attend──► fused ──► a mixing matrix M (dim × rank)
    row i of B = g_(row i) · M_(layer, rows);  column j of A = g_(column j) · M_(layer, columns)

The decode is Perceiver-IO shaped (each row/column token of W0 emits its own row of B / column of
A, so any shape and any number of layers work) but factorised: the per-token part g_t does not
depend on the prompt and is cached with the weight encoding, and the prompt enters through one
small matrix per layer side. A prompt then costs the fusion Transformer plus tokens × dim × rank
multiply-adds, milliseconds on a CPU, where a per-token cross-attention decode costs ~40x more.

The outputs are SVD-canonical LoRA factors (B = U S^½, A = S^½ Vᵀ, alpha = rank) for all layers
in one pass. Ablation switches (HypernetConfig): queries, tokenize full|half, conditioning
weights|noise|none, design unified|ensemble (one small predictor per transformer block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..training import name_seed

MODULE_TYPES = ("self_q", "self_k", "self_v", "self_o", "cross_q", "cross_k", "cross_v", "cross_o",
                "add_k", "add_v", "ffn_in", "ffn_out")


@dataclass
class HypernetConfig:
    dim: int = 128
    heads: int = 4
    queries: int = 256
    fusion_layers: int = 2
    rank: int = 8
    text_dim: int = 384
    max_blocks: int = 64
    tokenize: Literal["full", "half"] = "full"
    conditioning: Literal["weights", "noise", "none"] = "weights"
    design: Literal["unified", "ensemble"] = "unified"


@dataclass
class LayerSpec:
    """One adapted layer as the hypernetwork sees it (from wan.layer_table)."""

    name: str
    module_type: str
    block: int
    out_features: int
    in_features: int


class Attention(nn.Module):
    """Multi-head attention with pre-norm and a residual MLP: x ← x + attn(x, context); x ← x + mlp(x).
    Self-attention when built with cross=False (context is x itself)."""

    def __init__(self, dim: int, heads: int, cross: bool = False):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(dim) if cross else None
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.norm(x)
        c = h if context is None else self.context_norm(context)
        q = self.q(h).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(c).view(b, c.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.out(y.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(x)


def half_rank(w: torch.Tensor) -> torch.Tensor:
    """W0 truncated to half its rank (the 'half' tokenization ablation)."""
    u, s, vh = torch.linalg.svd(w.float(), full_matrices=False)
    k = max(1, len(s) // 2)
    return (u[:, :k] * s[:k]) @ vh[:k]


class WeightTokenizer(nn.Module):
    """Rows and columns of each W0 → tokens of width `dim`, tagged with where they come from."""

    def __init__(self, config: HypernetConfig, widths: list[int]):
        super().__init__()
        self.config = config
        self.project = nn.ModuleDict({str(w): nn.Linear(w, config.dim) for w in sorted(set(widths))})
        self.block = nn.Embedding(config.max_blocks, config.dim)
        self.module_type = nn.Embedding(len(MODULE_TYPES), config.dim)
        self.side = nn.Embedding(2, config.dim)  # 0 = row token (→ B), 1 = column token (→ A)

    def index_code(self, n: int) -> torch.Tensor:
        """Sinusoidal code of the position i/n inside the layer (rows and columns are ordered)."""
        position = torch.arange(n, dtype=torch.float32).unsqueeze(1) / n
        freqs = torch.exp(torch.arange(0, self.config.dim, 2, dtype=torch.float32) * (-math.log(100.0) / self.config.dim))
        angles = 2 * math.pi * position * freqs * n ** 0.5
        return torch.cat([angles.sin(), angles.cos()], dim=1)[:, : self.config.dim]

    def forward(self, layers: list[LayerSpec], weights: list[torch.Tensor]) -> torch.Tensor:
        """All tokens of all layers, (T, dim), in order: for each layer its rows, then its columns."""
        tokens = []
        for spec, w in zip(layers, weights):
            w = w.float()
            if self.config.tokenize == "half":
                w = half_rank(w)
            tag = self.block.weight[spec.block] + self.module_type.weight[MODULE_TYPES.index(spec.module_type)]
            for side, matrix in ((0, w), (1, w.T)):
                if self.config.conditioning == "weights":
                    content = self.project[str(matrix.shape[1])](matrix)
                elif self.config.conditioning == "noise":  # a fixed random stand-in for W0 (ablation)
                    g = torch.Generator().manual_seed(name_seed("noise-tokens", spec.name, side))
                    content = self.project[str(matrix.shape[1])](torch.randn(matrix.shape, generator=g) * matrix.std())
                else:  # "none": no weight content at all, only where the token is
                    content = torch.zeros(matrix.shape[0], self.config.dim)
                tokens.append(content + tag + self.side.weight[side] + self.index_code(matrix.shape[0]))
        return torch.cat(tokens)


class Predictor(nn.Module):
    """Compress weight tokens into latents, fuse them with the prompt, decode every token's factor row."""

    def __init__(self, config: HypernetConfig, n_sides: int):
        super().__init__()
        d = config.dim
        self.rank = config.rank
        self.queries = nn.Parameter(torch.randn(config.queries, d) * 0.02)
        self.compress = Attention(d, config.heads, cross=True)
        self.features = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.side_queries = nn.Parameter(torch.randn(n_sides, d) * 0.02)
        self.text = nn.Linear(config.text_dim, d)
        self.fusion = nn.ModuleList(Attention(d, config.heads) for _ in range(config.fusion_layers))
        self.readout = Attention(d, config.heads, cross=True)
        self.mixing = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d * config.rank))
        self.use_weights = config.conditioning != "none"

    def encode(self, tokens: torch.Tensor, sides: list[slice]) -> dict[str, torch.Tensor]:
        """The prompt-independent part: latents (queries, dim), token features (T, dim) and one
        query per layer side (sides, dim) = learned query + mean of that side's tokens."""
        latents = self.queries.unsqueeze(0)
        if self.use_weights:
            latents = self.compress(latents, tokens.unsqueeze(0))
        side_queries = self.side_queries + torch.stack([tokens[s].mean(0) for s in sides])
        return {"latents": latents.squeeze(0), "features": self.features(tokens), "side_queries": side_queries}

    def forward(self, encoded: dict[str, torch.Tensor], sides: list[slice], text: torch.Tensor,
                text_mask: torch.Tensor) -> list[torch.Tensor]:
        """Per layer side, (batch, tokens of the side, rank): rows of B or columns of A, per prompt."""
        batch = text.shape[0]
        latents = encoded["latents"]
        x = torch.cat([latents.unsqueeze(0).expand(batch, -1, -1), self.text(text)], dim=1)
        mask = torch.cat([torch.ones(batch, latents.shape[0], dtype=torch.bool, device=text.device), text_mask], dim=1)
        for layer in self.fusion:
            x = layer(x, mask=mask)
        queries = encoded["side_queries"].unsqueeze(0).expand(batch, -1, -1)
        context = self.readout(queries, context=x, mask=mask)  # (batch, sides, dim)
        mixing = self.mixing(context).view(batch, len(sides), -1, self.rank)
        features = encoded["features"]
        return [torch.einsum("td,bdr->btr", features[s], mixing[:, k]) for k, s in enumerate(sides)]


class Hypernetwork(nn.Module):
    """W0 of a base + prompt embeddings → canonical LoRA factors of every adapted layer."""

    def __init__(self, config: HypernetConfig, layers: list[LayerSpec]):
        super().__init__()
        self.config = config
        self.layers = layers
        widths = [n for spec in layers for n in (spec.in_features, spec.out_features)]
        self.tokenizer = WeightTokenizer(config, widths)
        groups = sorted({spec.block for spec in layers}) if config.design == "ensemble" else [None]
        self.groups = groups
        self.predictors = nn.ModuleList(Predictor(config, 2 * len(members)) for members in self.token_groups())
        # per-layer output scale: the network predicts factors in units of the library's typical size
        self.register_buffer("scale_b", torch.ones(len(layers)))
        self.register_buffer("scale_a", torch.ones(len(layers)))

    def token_groups(self) -> list[list[int]]:
        """Which layers each predictor handles (all of them, or one block each)."""
        return [[i for i, s in enumerate(self.layers) if g is None or s.block == g] for g in self.groups]

    def sides(self, members: list[int]) -> list[slice]:
        """Where each layer's row tokens and column tokens sit in its predictor's token sequence."""
        out, offset = [], 0
        for i in members:
            spec = self.layers[i]
            out += [slice(offset, offset + spec.out_features),
                    slice(offset + spec.out_features, offset + spec.out_features + spec.in_features)]
            offset += spec.out_features + spec.in_features
        return out

    def encode_weights(self, weights: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The prompt-independent part, per predictor. Cache it per base (generate does)."""
        cache = []
        for predictor, members in zip(self.predictors, self.token_groups()):
            tokens = self.tokenizer([self.layers[i] for i in members], [weights[i] for i in members])
            cache.append(predictor.encode(tokens, self.sides(members)))
        return cache

    def forward(self, encoded: list[dict[str, torch.Tensor]], text: torch.Tensor,
                text_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (B (batch, out, r), A (batch, r, in)) for a batch of prompt embeddings."""
        factors: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        for predictor, members, cached in zip(self.predictors, self.token_groups(), encoded):
            out = predictor(cached, self.sides(members), text, text_mask)
            for k, i in enumerate(members):
                rows, cols = out[2 * k], out[2 * k + 1]
                factors[i] = (rows * self.scale_b[i], cols.transpose(1, 2) * self.scale_a[i])
        return factors  # type: ignore[return-value]
