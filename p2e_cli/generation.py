"""Generation: effect prompts -> predicted LoRA files and registry records.

The one library path behind `p2e generate` and `p2e app`:

```
 prompts ──► Generator (hypernetwork bound to a base; W0 encoding cached per base)
              │ canonical factors (B, A) per layer, + nearest library effects
              ▼
 finish: rank-r SVD of scale·B·A ──► LoraLayer per layer, ‖ΔW‖
              │
              ├─► registry artifact + lora record (kind predicted, parents: base, hypernet)
              └─► optional file at a target path (same metadata, parent: the record)
```

A `Generator` is built once and reused (the app keeps one per process), so a prompt costs only
the text encoder, the fusion Transformer, the decode and the writes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import P2EError

if TYPE_CHECKING:
    from .hypernet.store import Generator
    from .registry import Record, Registry


def open_generator(reg: Registry, base: Record, hypernet_path: Path, precision: str = "auto") -> Generator:
    """The hypernetwork at `hypernet_path` bound to `base`, its W0 encoding cached in the registry."""
    from .hypernet.store import Generator

    return Generator(hypernet_path, base, reg.folder("cache", "hypernet"), precision=precision)


def slug(prompt: str) -> str:
    """A file name stem from a prompt: lowercase words joined by '-', at most 60 characters."""
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "lora"


def finish(b: Any, a: Any, rank: int, scale: float) -> tuple[Any, Any]:
    """Canonical factors of scale·B·A truncated to `rank` (float32, written with alpha = rank)."""
    from .canon import canonical_from_svd, low_rank_svd

    U, S, V = low_rank_svd(b, a, scale)
    b, a = canonical_from_svd(U, S, V, rank)
    return b.float(), a.float()


def generate_loras(reg: Registry, generator: Generator, hypernet: Record | None, prompts: Sequence[str], *,
                   rank: int | None = None, scale: float = 1.0, targets: Sequence[Path | None] | None = None,
                   register: bool = True) -> list[dict[str, Any]]:
    """Write one predicted LoRA per prompt; returns one entry per prompt:
    {prompt, output, record, norm, rank, scale, precision, nearest: [{effect, similarity}]}.

    `rank` keeps the top singular directions (default: the hypernetwork's rank); `scale` multiplies
    ΔW. With `register`, each LoRA is stored as a registry artifact and recorded as kind predicted;
    `targets[i]`, when not None, also gets the file (the caller checked the path).
    """
    from .canon import low_rank_norm
    from .lora_io import LoraLayer, write_lora
    from .records import LoraData, register_lora

    base = generator.base
    keep = generator.rank if rank is None else rank
    if not 1 <= keep <= generator.rank:
        raise P2EError(f"--rank {rank} is outside 1..{generator.rank} (the hypernetwork's rank)")
    prompts = list(prompts)
    targets = list(targets) if targets is not None else [None] * len(prompts)
    factors = generator(prompts)
    nearest = generator.nearest(prompts)
    parents = [hypernet.id] if hypernet is not None else []
    results = []
    for prompt, layers, near, target in zip(prompts, factors, nearest, targets):
        final = {name: finish(b, a, keep, scale) for name, (b, a) in layers.items()}
        norm = math.sqrt(sum(low_rank_norm(b, a) ** 2 for b, a in final.values()))
        lora = {name: LoraLayer(a, b, float(keep)) for name, (b, a) in final.items()}
        entry = {"prompt": prompt, "output": None, "record": None, "norm": norm, "rank": keep, "scale": scale,
                 "precision": generator.precision, "nearest": [{"effect": e, "similarity": s} for e, s in near]}
        if register:
            with reg.artifact(".safetensors") as pending:
                write_lora(pending.path, lora, kind="predicted", base=base, prompt=prompt, parents=parents,
                           title=f"{prompt} (predicted)")
            data = LoraData.on(base, keep, keep, prompt=prompt, hypernet=hypernet.id if hypernet else str(generator.path),
                               scale=scale, norm=norm, precision=generator.precision, nearest=entry["nearest"])
            saved = register_lora(reg, data, pending.ref, subkind="predicted", parents=[base.id, *parents])
            entry["record"] = saved.id
        if target is not None:
            write_lora(target, lora, kind="predicted", base=base, prompt=prompt,
                       parents=[entry["record"]] if entry["record"] else parents, title=f"{prompt} (predicted)")
            entry["output"] = str(target)
        results.append(entry)
    return results
