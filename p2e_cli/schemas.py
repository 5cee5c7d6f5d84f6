"""Typed recipe schemas: one dataclass tree per recipe `kind`. Pure data, no heavy imports.

Field metadata `min`/`max` bound numbers; `recipes.parse_recipe` enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

STEPS_MAX = 10_000_000


def bounded(default: float | int, lo: float | int, hi: float | int):
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass
class OptimConfig:
    lr: float = bounded(1e-3, 0.0, 10.0)
    weight_decay: float = bounded(0.0, 0.0, 10.0)
    warmup_steps: int = bounded(0, 0, STEPS_MAX)


@dataclass
class LoraRecipe:
    """Training one reference LoRA (p2e train lora)."""

    kind: Literal["lora"] = "lora"
    base: str = "tiny"
    rank: int = bounded(8, 1, 1024)
    alpha: float = bounded(8.0, 1e-6, 1e6)
    targets: list[str] = field(default_factory=lambda: ["self_q", "self_k", "self_v", "self_o",
                                                         "cross_q", "cross_k", "cross_v", "cross_o",
                                                         "ffn_in", "ffn_out"])
    steps: int = bounded(300, 1, STEPS_MAX)
    batch_size: int = bounded(8, 1, 4096)
    clips_per_effect: int = bounded(32, 1, 100_000)
    seed: int = bounded(0, 0, 2**31 - 1)
    validate_every: int = bounded(50, 1, STEPS_MAX)
    checkpoint_every: int = bounded(100, 1, STEPS_MAX)
    optim: OptimConfig = field(default_factory=OptimConfig)


RECIPE_KINDS: dict[str, type] = {"lora": LoraRecipe}
