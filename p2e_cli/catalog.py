"""Names that become records: the newest reference LoRA of a library effect on a base.

One floor above the registry (issue 31's catalog layer, begun): `render`, `finetune` and the
evaluation ask here instead of each scanning the registry their own way.
"""

from __future__ import annotations

from .registry import Record, Registry


def effect_references(reg: Registry, base: Record, effects: list[str] | None = None) -> dict[str, Record]:
    """{effect: its newest reference LoRA trained for `base`} (all effects, or those named). A
    shipped world's library is registered first, once, so a fresh install finds its references."""
    from .hypernet.library import newest_per_effect
    from .world.shipped import install_shipped_library

    install_shipped_library(reg, base)
    newest = newest_per_effect(reg, "reference", base)
    return newest if effects is None else {e: r for e, r in newest.items() if e in effects}


def effect_reference(reg: Registry, base: Record, name: str) -> Record | None:
    """The newest reference LoRA of the library effect `name` on `base`; None when `name` is not a
    library effect or has no reference there."""
    from .effects import effect_names

    if name not in effect_names():
        return None
    return effect_references(reg, base, [name]).get(name)
