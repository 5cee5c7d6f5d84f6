"""The real Wan transformers' shapes, without their weights: layer tables, benchmarks and the
scale recipe at 14B size on machines that could never hold the model.

`REAL_CONFIGS` are the diffusers `transformer/config.json` values of the published models
(Wan-AI/*-Diffusers). `random_w0` stands in for a base's W0 at those shapes, one layer at a time,
so a benchmark streams 14B parameters through the hypernetwork's encoder in bounded memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import P2EError
from .wan import Layer, layer_table

_COMMON = {"_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2], "attention_head_dim": 128, "text_dim": 4096,
           "freq_dim": 256, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6,
           "rope_max_seq_len": 1024, "out_channels": 16, "image_dim": None, "added_kv_proj_dim": None}

REAL_CONFIGS: dict[str, dict[str, Any]] = {
    # Wan2.1-I2V-14B-480P/720P: CLIP image tokens through add_k/add_v in every block
    "wan21-i2v-14b": {**_COMMON, "num_layers": 40, "num_attention_heads": 40, "ffn_dim": 13824, "in_channels": 36,
                      "image_dim": 1280, "added_kv_proj_dim": 5120},
    # Wan2.1's 1.3B sizes (published as T2V) with the I2V inputs: the 1.3B-shaped I2V table
    "wan21-i2v-1.3b": {**_COMMON, "num_layers": 30, "num_attention_heads": 12, "ffn_dim": 8960, "in_channels": 36,
                       "image_dim": 1280, "added_kv_proj_dim": 1536},
    # Wan2.2-I2V-A14B: two experts (transformer, transformer_2) of this shape, no image encoder
    "wan22-i2v-a14b": {**_COMMON, "num_layers": 40, "num_attention_heads": 40, "ffn_dim": 13824, "in_channels": 36},
    # Wan2.2-TI2V-5B: its own VAE (48 latent channels), image conditioning by the first latent frame
    "wan22-ti2v-5b": {**_COMMON, "num_layers": 30, "num_attention_heads": 24, "ffn_dim": 14336, "in_channels": 48,
                      "out_channels": 48},
}


def real_config(name: str) -> dict[str, Any]:
    if name not in REAL_CONFIGS:
        raise P2EError(f"unknown Wan shape {name!r}", hint=f"one of: {', '.join(REAL_CONFIGS)}")
    return dict(REAL_CONFIGS[name])


def real_layer_table(name: str, targets: Any = None) -> list[Layer]:
    """The adaptable layers of a real Wan transformer, from its config alone."""
    return layer_table(real_config(name)) if targets is None else layer_table(real_config(name), targets)


def write_config(name: str, folder: Path) -> Path:
    """`folder/config.json` for a real shape (what `layer_table(folder)` and benchmarks read)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(real_config(name), indent=2) + "\n", encoding="utf-8")
    return path


def random_w0(layers: list[Any], seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> Iterator[torch.Tensor]:
    """A stand-in W0 per layer, generated one layer at a time (never all in memory): N(0, 1/in),
    the scale of a trained Wan linear, stored like a real checkpoint (bf16)."""
    for i, layer in enumerate(layers):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        yield (torch.randn(layer.out_features, layer.in_features, generator=g) / layer.in_features ** 0.5).to(dtype)
