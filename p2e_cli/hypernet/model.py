"""The weight-driven hypernetwork of Prompt2Effect, in one file, readable top to bottom.

    W0 of every adapted layer ──► row tokens (out × in) and column tokens (in × out), full rank
        + layer / module-type / row-or-column embeddings
    n learnable queries ──cross-attend──► weight tokens            (compression; no prompt:
    every token ──MLP──► its feature g_t                            computed once per base, cached)
    [latents + pooled prompt ; prompt tokens] ──Transformer──► fused latents   (fusion with the prompt)
    one query per (layer, rows|columns) + pooled prompt ──cross-attend──► fused ──► a mixing matrix M
    row i of B = g_(row i) · M_(layer, rows);  column j of A = g_(column j) · M_(layer, columns)

The decode is Perceiver-IO shaped (each row/column token of W0 emits its own row of B / column of
A, so any shape and any number of layers work) but factorised: the per-token part g_t does not
depend on the prompt and is cached with the weight encoding, and the prompt enters through one
small matrix per layer side. A prompt then costs the fusion Transformer plus tokens × dim × rank
multiply-adds, milliseconds on a CPU, where a per-token cross-attention decode costs ~40x more.

The weight encoding streams: each layer's W0 is tokenized and reduced on its own to a partial
result (its token features, the means of its sides, and its share of the queries' attention as
online-softmax statistics), and the partials are merged exactly at the end. So a 14B base is read
one layer at a time and an interrupted encoding resumes from the layers already done.

The outputs are SVD-canonical LoRA factors (B = U S^½, A = S^½ Vᵀ, alpha = rank) for all layers
in one pass. Ablation switches (HypernetConfig): queries, tokenize full|half, conditioning
weights|noise|none, design unified|ensemble (one small predictor per transformer block), prompt
tokens|sentence (sentence: no prompt tokens in the fusion, only the unit-norm pooled embedding).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..schemas import HypernetModel
from ..training import name_seed
from ..wan import MODULE_TYPES  # the block-type embedding's row order: never reorder



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
    feature_dim: int = 0  # width of the cached per-token features g_t (0: = dim); smaller at 14B scale
    gradient_checkpointing: bool = False  # recompute the fusion Transformer in backward (large networks)
    # hidden width of the head (0: 4 x dim). Every side's mixing matrix comes out of this one space,
    # so it bounds how many distinct (layer side, effect) targets fit: on the tiny library the top
    # 128 / 512 / 1024 principal directions of those targets hold 45% / 82% / 95% of their energy
    head_dim: int = 0
    # rank of the stored prior (the train library's mean ΔW) that outputs are shrunk toward; 0: none
    prior_rank: int = 0
    RETIRED: ClassVar[dict[str, Any]] = HypernetModel.RETIRED  # the recipe's retired keys (schemas.split_retired)

    @property
    def features(self) -> int:
        return self.feature_dim or self.dim


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
        return self.finish(x, y)

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Residual output projection and MLP after attention values y (b, heads, n, head dim)."""
        b, n, d = x.shape
        x = x + self.out(y.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(x)

    def partial(self, x: torch.Tensor, context: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-attention of x (1, n, dim) to one chunk of context (1, t, dim), as online-softmax
        statistics: per head and query the max logit m, Σexp(logit − m) and Σexp(logit − m)·v."""
        b, n, d = x.shape
        q = self.q(self.norm(x)).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(self.context_norm(context)).view(b, context.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-1, -2)) * (d // self.heads) ** -0.5
        m = logits.amax(-1, keepdim=True)
        p = (logits - m).exp()
        return {"m": m, "l": p.sum(-1, keepdim=True), "acc": p @ v}

    def merge(self, x: torch.Tensor, parts: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """forward(x, concatenation of the chunks), from their partial() statistics."""
        m = torch.stack([p["m"] for p in parts]).amax(0)
        weights = [(p["m"] - m).exp() for p in parts]
        l = sum(w * p["l"] for w, p in zip(weights, parts))
        acc = sum(w * p["acc"] for w, p in zip(weights, parts))
        return self.finish(x, acc / l)


def half_rank(w: torch.Tensor) -> torch.Tensor:
    """W0 truncated to half its rank (the 'half' tokenization ablation)."""
    u, s, vh = torch.linalg.svd(w.float(), full_matrices=False)
    k = max(1, len(s) // 2)
    return (u[:, :k] * s[:k]) @ vh[:k]


@functools.lru_cache(maxsize=64)
def cosine_basis(n: int, width: int) -> torch.Tensor:
    """(n, width): the first min(n, width) DCT-II vectors over n positions as columns, entries of
    RMS 1, the rest zero. Added to the learned token features g_t so that the factor rows a side can
    express span min(n, width) directions with condition number 1 from the start (learned features
    alone came out near rank-deficient, condition ~1e6, and the network could not fit its targets).
    Cached (training encodes every layer each step); callers must not modify the result."""
    k = torch.arange(min(n, width), dtype=torch.float64)
    t = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    basis = torch.cos(math.pi * (t + 0.5) * k / n) * math.sqrt(2.0)
    basis[:, 0] = 1.0
    return F.pad(basis, (0, width - basis.shape[1])).float()


def layer_specs(table) -> list[LayerSpec]:
    """LayerSpecs of a layer table (wan.layer_table rows, or anything with the same fields)."""
    return [LayerSpec(l.name, l.module_type, l.block, l.out_features, l.in_features) for l in table]


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
        device = self.block.weight.device
        position = torch.arange(n, dtype=torch.float32, device=device).unsqueeze(1) / n
        freqs = torch.exp(torch.arange(0, self.config.dim, 2, dtype=torch.float32, device=device)
                          * (-math.log(100.0) / self.config.dim))
        angles = 2 * math.pi * position * freqs * n ** 0.5
        return torch.cat([angles.sin(), angles.cos()], dim=1)[:, : self.config.dim]

    def forward(self, spec: LayerSpec, w: torch.Tensor) -> torch.Tensor:
        """One layer's tokens, (out + in, dim): its rows, then its columns."""
        w = w.to(device=self.block.weight.device, dtype=torch.float32)
        if self.config.tokenize == "half":
            w = half_rank(w)
        tag = self.block.weight[spec.block] + self.module_type.weight[MODULE_TYPES.index(spec.module_type)]
        tokens = []
        for side, matrix in ((0, w), (1, w.T)):
            if self.config.conditioning == "weights":
                content = self.project[str(matrix.shape[1])](matrix)
            elif self.config.conditioning == "noise":  # a fixed random stand-in for W0 (ablation)
                g = torch.Generator().manual_seed(name_seed("noise-tokens", spec.name, side))
                noise = torch.randn(matrix.shape, generator=g).to(matrix.device)
                content = self.project[str(matrix.shape[1])](noise * matrix.std())
            else:  # "none": no weight content at all, only where the token is
                content = matrix.new_zeros(matrix.shape[0], self.config.dim)
            tokens.append(content + tag + self.side.weight[side] + self.index_code(matrix.shape[0]))
        return torch.cat(tokens)


class Predictor(nn.Module):
    """Compress weight tokens into latents, fuse them with the prompt, decode every token's factor row."""

    def __init__(self, config: HypernetConfig, n_sides: int):
        super().__init__()
        d, f = config.dim, config.features
        self.rank = config.rank
        self.checkpointing = config.gradient_checkpointing
        self.queries = nn.Parameter(torch.randn(config.queries, d) * 0.02)
        self.compress = Attention(d, config.heads, cross=True)
        self.features = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, f))
        self.side_queries = nn.Parameter(torch.randn(n_sides, d) * 0.02)
        self.text = nn.Linear(config.text_dim, d)  # prompt tokens into the fusion
        self.prompt = nn.Sequential(nn.Linear(config.text_dim, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))
        self.fusion = nn.ModuleList(Attention(d, config.heads) for _ in range(config.fusion_layers))
        self.readout = Attention(d, config.heads, cross=True)
        hidden = config.head_dim or 4 * d
        self.mixing = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, f * config.rank))
        # the head starts at zero output (ΔW = 0, the base itself): a random head made the first
        # losses ~1e3 times the later ones, and Adam's second moments then froze learning for ~1e3 steps
        nn.init.zeros_(self.mixing[-1].weight)
        nn.init.zeros_(self.mixing[-1].bias)
        self.use_weights = config.conditioning != "none"

    def encode_layer(self, tokens: torch.Tensor, rows: int) -> dict[str, torch.Tensor]:
        """One layer's share of the prompt-independent encoding: its token features (T, f), the
        means of its row and column tokens (2, dim), and the queries' attention to its tokens."""
        width = self.features[-1].out_features
        basis = torch.cat([cosine_basis(rows, width), cosine_basis(len(tokens) - rows, width)]).to(tokens)
        part = {"features": self.features(tokens) + basis,
                "sides": torch.stack([tokens[:rows].mean(0), tokens[rows:].mean(0)])}
        if self.use_weights:
            part.update(self.compress.partial(self.queries.unsqueeze(0), tokens.unsqueeze(0)))
        return part

    def encode(self, parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Merge the layers' parts: latents (queries, dim) = the queries cross-attending to all weight
        tokens, features (T, f), one query per layer side (sides, dim) = learned + that side's mean."""
        latents = self.queries.unsqueeze(0)
        if self.use_weights:
            latents = self.compress.merge(latents, parts)
        return {"latents": latents.squeeze(0), "features": torch.cat([p["features"] for p in parts]),
                "side_queries": self.side_queries + torch.cat([p["sides"] for p in parts])}

    def forward(self, encoded: dict[str, torch.Tensor], sides: list[slice], text: torch.Tensor,
                text_mask: torch.Tensor) -> list[torch.Tensor]:
        """Per layer side, (batch, tokens of the side, rank): rows of B or columns of A, per prompt.
        text_mask is a bool mask, or float token weights in [0, 1] (training mixup: two prompts'
        tokens weighted λ and 1 − λ, pooled by those weights and attended with log-weight bias)."""
        batch = text.shape[0]
        latents = encoded["latents"]
        # the pooled prompt joins every latent and every readout query at full strength: through
        # attention alone, ~10 prompt tokens among 256 latents moved the output by 0.3% at init
        keep = text_mask.unsqueeze(-1).to(text.dtype)
        pooled = (text * keep).sum(1) / keep.sum(1).clamp_min(1e-6)
        prompt = self.prompt(pooled).unsqueeze(1)  # (batch, 1, dim)
        x = torch.cat([latents.unsqueeze(0) + prompt, self.text(text)], dim=1)
        latent_mask = torch.ones(batch, latents.shape[0], dtype=text_mask.dtype, device=text.device)
        mask = torch.cat([latent_mask, text_mask], dim=1)
        if mask.is_floating_point():  # token weights (mixup): attention logits get log(weight), 0 = padding
            mask = mask.clamp_min(1e-30).log().masked_fill(mask == 0, float("-inf")).to(text.dtype)
        for layer in self.fusion:
            if self.checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, None, mask, use_reentrant=False)
            else:
                x = layer(x, mask=mask)
        queries = encoded["side_queries"].unsqueeze(0) + prompt
        context = self.readout(queries, context=x, mask=mask)  # (batch, sides, dim)
        # one (tokens × f) @ (f × batch·rank) GEMM per side; an einsum broadcast the cached features
        # over the batch first (a copy per prompt): the decode alone ~25% slower for 100 prompts
        mixing = self.mixing(context).view(batch, len(sides), -1, self.rank).permute(1, 2, 0, 3)
        mixing = mixing.reshape(len(sides), -1, batch * self.rank)
        # split/unbind, not indexing: the backward of each of 2·layers slices `features[s]` wrote a
        # zero tensor the size of all features (80 x 13312 x 512 floats a step on the tiny world,
        # half the CPU time of a training step); split's backward is one concatenation
        features = encoded["features"].split([s.stop - s.start for s in sides])
        return [(f @ m).view(-1, batch, self.rank).transpose(0, 1) for f, m in zip(features, mixing.unbind(0))]


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
        self.predictor_of = {i: k for k, members in enumerate(self.token_groups()) for i in members}
        # per-layer output scale: the network predicts factors in units of the library's typical size
        self.register_buffer("scale_b", torch.ones(len(layers)))
        self.register_buffer("scale_a", torch.ones(len(layers)))
        if config.prior_rank:  # shrinkage toward the library mean (set after training; α = 1 leaves outputs as they are)
            for i, spec in enumerate(layers):
                self.register_buffer(f"prior_b_{i}", torch.zeros(spec.out_features, config.prior_rank))
                self.register_buffer(f"prior_a_{i}", torch.zeros(config.prior_rank, spec.in_features))
            self.register_buffer("shrink", torch.ones(()))

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

    def encode_layer(self, i: int, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Layer i's part of the weight encoding (see Predictor.encode_layer), from its W0 alone."""
        spec = self.layers[i]
        return self.predictors[self.predictor_of[i]].encode_layer(self.tokenizer(spec, w), spec.out_features)

    def encode_parts(self, parts: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """Merge every layer's part (in layer order) into the encoding, one entry per predictor."""
        return [predictor.encode([parts[i] for i in members])
                for predictor, members in zip(self.predictors, self.token_groups())]

    def encode_weights(self, weights: Iterable[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The prompt-independent part, per predictor, reading W0 one layer at a time (`weights` may
        be a generator). Cache it per base (generate does). With gradient checkpointing, training
        keeps only each layer's part and recomputes its tokens in backward (memory of one layer)."""
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return self.encode_parts([torch.utils.checkpoint.checkpoint(self.encode_layer, i, w, use_reentrant=False)
                                      for i, w in enumerate(weights)])
        return self.encode_parts([self.encode_layer(i, w) for i, w in enumerate(weights)])

    def prior(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer i's stored prior factors (B (out, prior_rank), A (prior_rank, in))."""
        return getattr(self, f"prior_b_{i}"), getattr(self, f"prior_a_{i}")

    def shrunk(self, factors: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """α·ΔW + (1 − α)·prior per layer, as stacked factors of rank r + prior_rank (no SVD):
        B = [α·B | (1 − α)·B_prior], A = [A; A_prior]. Unchanged without a prior."""
        if not self.config.prior_rank:
            return factors
        alpha = self.shrink
        out = []
        for i, (b, a) in enumerate(factors):
            pb, pa = self.prior(i)
            n = b.shape[0]
            out.append((torch.cat([alpha * b, ((1 - alpha) * pb).expand(n, *pb.shape)], dim=2),
                        torch.cat([a, pa.expand(n, *pa.shape)], dim=1)))
        return out

    def forward(self, encoded: list[dict[str, torch.Tensor]] | list[torch.Tensor], text: torch.Tensor,
                text_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (B (batch, out, r), A (batch, r, in)) for a batch of prompt embeddings, from
        the cached weight encoding, or from the W0 list itself (training: encoded in this forward,
        so a sharded network gathers its parameters for the whole pass)."""
        if not isinstance(encoded[0], dict):
            encoded = self.encode_weights(encoded)
        factors: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        for predictor, members, cached in zip(self.predictors, self.token_groups(), encoded):
            out = predictor(cached, self.sides(members), text, text_mask)
            for k, i in enumerate(members):
                rows, cols = out[2 * k], out[2 * k + 1]
                factors[i] = (rows * self.scale_b[i], cols.transpose(1, 2) * self.scale_a[i])
        return factors  # type: ignore[return-value]
