"""Names that become records: a base name (or none: the shipped `tiny`), and the newest reference
LoRA of a library effect on a base.

One floor above the registry (issue 31's catalog layer, begun): `render`, `finetune` and the
evaluation ask here instead of each scanning the registry their own way.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .errors import P2EError
from .registry import Record, Registry, open_registry


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


# MiniLM sentence cosine from which a LoRA's prompt names a library effect. Measured on the library's
# unseen paraphrases (benchmarks/effect_inference.py): at 0.7, 27% of them are inferred and 18% of
# those name a neighbour (zoom-out for "the view backs away"); at 0.6, 64% and 27%. Unrelated
# sentences stay below 0.4. Below the threshold the command asks for the effect.
INFER_SIMILARITY = 0.7


def library_prompts() -> tuple[list[str], list[str]]:
    """(effect names, prompts): every library effect's training prompts, as two parallel lists."""
    from .effects import EFFECTS

    pairs = [(e.name, p) for e in EFFECTS for p in e.prompts]
    return [n for n, _ in pairs], [p for _, p in pairs]


@functools.lru_cache(maxsize=1)
def _library_sentences():
    """(encoder, effect names, their prompts' sentence embeddings): loaded and encoded once a process."""
    from .hypernet.text import TextEncoder

    names, prompts = library_prompts()
    encoder = TextEncoder()
    return encoder, names, encoder.sentence(prompts)


def nearest_library_effects(prompt: str, k: int = 3) -> list[tuple[str, float]]:
    """The k library effects whose prompts are nearest `prompt` (MiniLM sentence cosine), best first."""
    encoder, names, library = _library_sentences()
    sims = (encoder.sentence([prompt]) @ library.T)[0].tolist()
    best: dict[str, float] = {}
    for name, value in zip(names, sims):
        best[name] = max(value, best.get(name, -1.0))
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


def infer_effect(reg: Registry, prompt: str) -> tuple[str | None, str]:
    """(effect, why) that a LoRA's prompt names: a curated real effect whose clips carry that caption,
    else the library effect with the nearest prompt when its cosine is >= INFER_SIMILARITY. The
    effect is None when neither holds; `why` then lists the nearest candidates."""
    key = " ".join(prompt.lower().split())
    for clip in reg.ls("clip"):
        if clip.data.get("source") == "real" and " ".join(str(clip.data.get("caption", "")).lower().split()) == key:
            return clip.data["effect"], f"its clips were curated with the caption {prompt!r}"
    near = nearest_library_effects(prompt)
    listed = ", ".join(f"{name} {value:.2f}" for name, value in near)
    if near[0][1] >= INFER_SIMILARITY:
        return near[0][0], f"the library effect nearest {prompt!r} (similarity {listed})"
    return None, f"no library effect is near {prompt!r} (similarity {listed}; inferred from {INFER_SIMILARITY})"


def resolve_base(name: str | None) -> Record:
    """The registered base named `name` (or id); None means the embedded default, `tiny`, which
    is registered from the package on first use (and re-linked if its folder went missing)."""
    from .world.shipped import install_shipped

    reg = open_registry()
    wanted = "tiny" if name is None else name
    record = reg.find("base", wanted)
    if record is None or record.data.get("shipped"):  # registered, repaired or renewed from the package
        record = install_shipped(reg, wanted) or record
    if record is not None and record.data.get("retired"):
        raise P2EError(f"base {wanted} is retired: {record.data['retired']}; its weights are no longer installed",
                       hint="use the world this p2e ships (no --base), or p2e base add NAME --path DIR")
    if record is None and name is None:
        raise P2EError("no --base given, and the embedded tiny world is not installed",
                       hint="register a Wan I2V folder with `p2e base add NAME --path DIR`, then pass --base NAME")
    return record if record is not None else reg.get(name, kind="base")


def resolve_hypernet(reg: Any, ref: str | None, base: Any) -> tuple[Path, Any]:
    """(weights file, registry record or None): a file, a registry hypernet id/name, or the newest
    hypernetwork trained on the base (else the one shipped with it, else the newest for its layer table)."""
    if ref is not None and (ref.endswith(".safetensors") or Path(ref).exists()):
        return Path(ref), None
    if ref is not None:
        record = reg.get(ref, "hypernet")
    else:
        fitting = [r for r in reg.ls("hypernet") if r.data.get("layer_table") == base.data.get("layer_table")
                   and not r.data.get("retired")]
        own = [r for r in fitting if r.data.get("base") == base.id]
        if not own:
            from .world.shipped import install_shipped_hypernet

            shipped = install_shipped_hypernet(reg, base)
            own = [shipped] if shipped is not None else []
        fitting = own or fitting
        if not fitting:
            raise P2EError(f"no hypernetwork for base {base.name or base.id}",
                           hint="train one with p2e train hypernet, or pass --hypernet FILE")
        record = max(fitting, key=lambda r: r.created)
        if not own:
            from . import console

            console.warn(f"base {base.name or base.id} has no hypernetwork of its own: using {record.label} "
                         f"({record.id}), trained on base {record.data.get('base')} with the same layer table; "
                         "pass --hypernet to choose")
    return reg.path(record.files["weights"]), record
