"""The hypernetwork's training data: a base's canonical LoRA library from the registry.

One `Example` per effect: its canonical factors for every adapted layer (or the raw reference
factors, for the `target: raw` ablation), the training paraphrases it is learned from, and the
unseen paraphrases it is evaluated on. Library effects carry their split (train / held-out) and
paraphrases; imported or real effects are train effects with their one recorded prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .. import console
from .. import effects as fx
from ..errors import P2EError
from ..lora_io import read_lora
from ..records import is_on
from ..registry import Record, Registry


@dataclass
class Example:
    effect: str
    split: str  # train | heldout
    prompts: list[str]  # what it is trained on
    unseen_prompts: list[str]  # paraphrases never trained on
    factors: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (B (out, r), A (r, in)), ΔW = B·A
    record: str  # the canonical LoRA's id
    notes: list[str] = field(default_factory=list)
    extra_prompts: list[str] = field(default_factory=list)  # more training paraphrases (recipe extra_paraphrases)


def _on_base(record: Record, base: Record) -> bool:
    return is_on(record, base) and record.data.get("layer_table") == base.data.get("layer_table")


def _lora_file(reg: Registry, record: Record):
    return read_lora(reg.path(record.files["lora"]))


def newest_per_effect(reg: Registry, subkind: str, base: Record) -> dict[str, Record]:
    """{effect: the newest LoRA of `subkind` (reference, canonical, ...) made for `base`}."""
    newest: dict[str, Record] = {}
    for record in reg.ls("lora", subkind):
        effect = record.data.get("effect")
        if effect and _on_base(record, base) and (effect not in newest or record.created > newest[effect].created):
            newest[effect] = record
    return newest


def canonical_library(reg: Registry, base: Record, target: str = "canonical") -> tuple[list[str], list[Example]]:
    """(layer names, examples): the newest canonical LoRA of each effect trained for `base`.
    Every LoRA must cover the same layers at the same rank (else P2EError names the odd one)."""
    newest = newest_per_effect(reg, "canonical", base)
    if not newest:
        raise P2EError(f"base {base.name or base.id} has no canonical reference LoRAs",
                       hint=f"p2e canon --all registers the library shipped with {base.name} and canonicalizes it (seconds)"
                       if base.data.get("shipped") else
                       "train them (p2e train lora --all --recipe library-tiny) and canonicalize them (p2e canon --all)")
    names: list[str] | None = None
    rank: int | None = None
    examples = []
    for effect, record in sorted(newest.items()):
        lora = _lora_file(reg, record)
        if names is None:
            names, rank = sorted(lora.layers), lora.rank
        if sorted(lora.layers) != names or lora.ranks != [rank]:
            raise P2EError(f"canonical LoRA {record.label} ({effect}) covers other layers or rank than the rest "
                           f"({len(lora.layers)} layers, rank {lora.ranks} vs {len(names)} layers, rank {rank})",
                           hint="train the whole library with one recipe, or remove the odd LoRA (p2e rm)")
        if target == "raw":
            lora = _lora_file(reg, reg.get(record.data["canonical_of"]))
        factors = []
        for name in names:
            layer = lora.layers[name]
            s = (layer.alpha / layer.rank) ** 0.5  # fold alpha/r into both factors: ΔW = B·A
            factors.append((layer.B.float() * s, layer.A.float() * s))
        examples.append(_example(effect, record, factors))
    single = [e.effect for e in examples if e.notes]
    if single:
        console.warn(f"{len(single)} effect(s) are not library effects and train on their one recorded prompt, with no "
                     f"unseen paraphrase to validate on: {', '.join(single[:8])}{' ...' if len(single) > 8 else ''}")
    return names, examples


def _example(effect: str, record: Record, factors: list[tuple[torch.Tensor, torch.Tensor]]) -> Example:
    try:
        e = fx.get_effect(effect)
        return Example(effect, e.split, list(e.prompts), list(e.heldout_prompts), factors, record.id,
                       extra_prompts=list(fx.extra_prompts(e)))
    except P2EError:
        prompt = record.data.get("prompt") or effect
        return Example(effect, "train", [prompt], [], factors, record.id, ["real or imported effect: one prompt"])


def describe(examples: list[Example], extra_paraphrases: bool = False) -> dict[str, Any]:
    """The run's dataset record (and a log line); with extra_paraphrases, the extra prompts counted too."""
    train = [e for e in examples if e.split == "train"]
    heldout = [e for e in examples if e.split != "train"]
    report = {"train_effects": len(train), "heldout_effects": len(heldout),
              "train_prompts": sum(len(e.prompts) for e in train)}
    extra = ""
    if extra_paraphrases:
        report["extra_prompts"] = sum(len(e.extra_prompts) for e in train)
        extra = f" + {report['extra_prompts']} extra"
    console.info(f"library: {len(train)} train effects ({report['train_prompts']} paraphrases{extra}), "
                 f"{len(heldout)} held-out effects")
    return report
