"""Typed data of the registry's LoRA records, and the one function that registers a LoRA.

Every command that makes a LoRA record (train, import, canon, generate, finetune, a shipped
library) goes through `register_lora` with a `LoraData`, so every record says the same things the
same way: `base` is the base record's *id* (never its name, which a retired world gives up), and
`layer_table` is that base's table. Readers use `LoraData.of(record)`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import P2EError
from .registry import ID_LEN, FileRef, Record, Registry


@dataclass(frozen=True)
class LoraData:
    rank: int
    alpha: float
    base: str | None = None  # the base record's id
    layer_table: str | None = None
    effect: str | None = None  # a library effect, or a curated one's name
    prompt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # per-subkind facts (val_loss, run, hypernet, ...)

    def __post_init__(self) -> None:
        """Refuse what no reader could use, naming the field (a bug in the writer, not user input)."""
        # rank and alpha 0: a file of full deltas only (.diff keys), no low-rank layer
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 0:
            raise P2EError(f"LoRA record rank must be a non-negative integer, got {self.rank!r}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha >= 0):
            raise P2EError(f"LoRA record alpha must be a non-negative number, got {self.alpha!r}")
        if self.base is not None and not _is_id(self.base):
            raise P2EError(f"LoRA record base must be a base record's id, got {self.base!r}")
        overlap = set(self.extra) & {f.name for f in fields(self)}
        if overlap:
            raise P2EError(f"LoRA record extra repeats typed field(s): {', '.join(sorted(overlap))}")

    @classmethod
    def on(cls, base: Record | None, rank: int, alpha: float, **kwargs: Any) -> "LoraData":
        """LoRA data for `base` (or none): its id and layer table. Unknown keywords go to `extra`."""
        known = {f.name for f in fields(cls)}
        extra = {k: v for k, v in kwargs.items() if k not in known}
        return cls(rank=rank, alpha=float(alpha), base=base.id if base is not None else None,
                   layer_table=base.data.get("layer_table") if base is not None else None,
                   **{k: v for k, v in kwargs.items() if k in known}, extra=extra)

    @classmethod
    def of(cls, record: Record) -> "LoraData":
        """The typed view of a LoRA record's data (validated as on writing). A base that migration 2
        could not turn into an id (its base record was removed) is kept as `base_name`."""
        known = {f.name for f in fields(cls)} - {"extra"}
        data = dict(record.data)
        if data.get("base") is not None and not _is_id(data["base"]):
            data["base_name"] = data.pop("base")
        return cls(rank=data.get("rank"), alpha=data.get("alpha"), **{k: data.get(k) for k in known - {"rank", "alpha"}},
                   extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {**out.pop("extra"), **out}


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(rf"[0-9a-f]{{{ID_LEN}}}", value) is not None


def register_lora(reg: Registry, data: LoraData, file: FileRef, *, subkind: str, name: str | None = None,
                  key: str | None = None, parents: list[str] = ()) -> Record:
    """Register a stored LoRA file (`file`, from `reg.artifact`) with its lineage `parents`: what it
    was made from (its base, a run, a source LoRA, a hypernetwork)."""
    return reg.add("lora", name=name, key=key, subkind=subkind, data=data.to_dict(), parents=list(parents),
                   files={"lora": file})


def is_on(record: Record, base: Record) -> bool:
    """A LoRA record made for `base` (registry migration 2 turned older records' base names into ids)."""
    return record.data.get("base") == base.id
