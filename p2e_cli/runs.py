"""Checkpoints of training runs, kept on their `run` record: weights as safetensors, optimizer
state as a torch file read back with weights_only=True (our own files only), and a JSON `meta`
(step, history, ...). A checkpoint belongs to one `group` (e.g. the effects trained together), so
a resumed run picks up only the checkpoint of the work it is about to continue.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from .registry import Record, Registry


def save_checkpoint(reg: Registry, run: Record, group: list[str], tensors, optimizer_state, meta) -> None:
    from safetensors.torch import save_file

    with reg.artifact(".safetensors") as weights:
        save_file(tensors, str(weights.path))
    buffer = io.BytesIO()
    torch.save(optimizer_state, buffer)
    reg.update(run.id, data={"checkpoint": {"group": group, **meta}},
               files={"checkpoint": weights.ref, "optimizer": reg.store_bytes(buffer.getvalue(), ".pt")})


def load_checkpoint(reg: Registry, run: Record, group: list[str]) -> dict[str, Any] | None:
    from safetensors.torch import load_file

    state = run.data.get("checkpoint")
    if not state or state.get("group") != group or "checkpoint" not in run.files:
        return None
    optimizer = torch.load(io.BytesIO(reg.path(run.files["optimizer"]).read_bytes()), weights_only=True)
    meta = {k: v for k, v in state.items() if k != "group"}
    return {"tensors": load_file(str(reg.path(run.files["checkpoint"]))), "optimizer": optimizer, "meta": meta}
