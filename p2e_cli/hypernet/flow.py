"""The flow phase of hypernetwork training: learn from the loss that recovery R measures.

Regressing reference ΔW (train.py) weighs every direction of ΔW alike, while the base's output
depends on some far more than others, and a reference is one noisy draw of a good LoRA. In this
phase (recipe `flow:`) each sample is (a training paraphrase of a train effect, one of that
effect's training clips): the network writes the LoRA for the prompt, the LoRA is applied to the
frozen base (adapters.supplied) and the clip's flow-matching loss is backpropagated through the
base into the network, plus `anchor` x the ΔW loss. The clips are the ones the reference LoRAs
trained on (train photos); R is measured on held-out photos' clips with p2e eval run's fixed draws
(key "eval/<effect>"), so the R logged here for an effect is the R `p2e eval run` reports.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

import torch

from .. import adapters, console
from ..metrics import recovery
from ..registry import Record, Registry
from ..schemas import HypernetRecipe, LoraRecipe
from ..training import flow_matching_loss, name_seed, shifted_sigmas, validation_loss
from .library import Example

Factors = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (B (batch, out, r), A (batch, r, in)), ΔW = B·A


@dataclass
class Clips:
    latents: torch.Tensor  # training clips (N, C, F, h, w), normalised
    text: torch.Tensor  # their caption embeddings
    val_latents: torch.Tensor  # held-out photos' clips, for R
    val_text: torch.Tensor


class FlowData:
    """The frozen base's transformer with supplied-factor adapters on the library's layers, and
    every example's encoded clips (synthesised and encoded as `p2e train lora` does, cached)."""

    def __init__(self, reg: Registry, base: Record, names: list[str], examples: list[Example], cfg: HypernetRecipe,
                 device: torch.device | str | None = None, validation: list[str] = ()):
        from ..lora_jobs import encode_all, flow_shift, gather
        from ..encode import load_encoded
        from ..wan import base_settings, load_pipeline

        settings = base_settings(base)
        pipe = load_pipeline(base)
        self.cfg = cfg
        self.shift = flow_shift(settings, pipe)
        self.transformer = pipe.transformer.to(device).eval()
        clip_cfg = LoraRecipe(clips_per_effect=cfg.flow.clips_per_effect, val_clips=cfg.flow.val_clips, seed=cfg.seed)
        console.info(f"flow phase: gathering and encoding the clips of {len(examples)} effects (cached)")
        data = [gather(reg, e.effect, clip_cfg, settings) for e in examples]
        encode_all(reg, base, pipe, data)
        self.clips = [Clips(*load_encoded(reg, base, d.train), *load_encoded(reg, base, d.val)) for d in data]
        self.effects = [e.effect for e in examples]
        self.space, self.space_clips = (space_clips(reg, base, pipe, cfg, settings, validation) if cfg.flow.space_effects
                                        else ([], None))
        # one adapter slot per layer, used only through `supplied` (its own A, B never train)
        self.layers = adapters.inject(self.transformer, names, [cfg.seed], 1, 1.0)
        self.transformer.requires_grad_(False)

    def batch(self, pairs: list[tuple[int, str]], step: int, rank: int = 0, world: int = 1):
        """The samples of the flow phase's step `step`, drawn from (seed, step): (pairs, latents,
        text, sigmas, noise); this process takes every world-th one. With the effect space on, the
        last `space_share` of the batch are sampled effects, their pairs (None, prompt)."""
        n = self.cfg.flow.batch_size
        n_space = round(self.cfg.flow.space_share * n) if self.space else 0
        g = torch.Generator().manual_seed(name_seed(self.cfg.seed, "hypernet-flow", step))
        picked = [pairs[j] for j in torch.randint(len(pairs), (n - n_space,), generator=g).tolist()]
        clips = [torch.randint(len(self.clips[e].latents), (1,), generator=g).item() for e, _ in picked]
        latents = [self.clips[e].latents[c] for (e, _), c in zip(picked, clips)]
        text = [self.clips[e].text[c] for (e, _), c in zip(picked, clips)]
        for _ in range(n_space):
            j, p, c = (torch.randint(k, (1,), generator=g).item()
                       for k in (len(self.space), len(self.space[0].prompts), self.cfg.flow.space_clips))
            picked.append((None, self.space[j].prompts[p]))
            latents.append(self.space_clips.latents[j * self.cfg.flow.space_clips + c])
            text.append(self.space_clips.text[j * self.cfg.flow.space_clips + c])
        latents, text = torch.stack(latents).float(), torch.stack(text).float()
        sigmas = shifted_sigmas(torch.rand(n, generator=g), self.shift)
        noise = torch.randn(latents.shape, generator=g)
        mine = slice(rank, None, world)
        return picked[mine], latents[mine], text[mine], sigmas[mine], noise[mine]

    def loss(self, factors: Factors, latents, text, sigmas, noise) -> torch.Tensor:
        """Mean flow-matching loss of the samples, each through the base with its own factors."""
        with adapters.supplied(self.layers, factors):
            return flow_matching_loss(self.transformer, latents, text, sigmas, noise).mean()

    @torch.no_grad()
    def validation(self, example: int, factors: Factors | None) -> float:
        """p2e eval run's validation loss of an effect with one LoRA ((1, ...) factors; None: the base)."""
        clips = self.clips[example]

        def before(rows):
            return adapters.supplied(self.layers, [(b.expand(len(rows), -1, -1), a.expand(len(rows), -1, -1))
                                                   for b, a in factors])

        return validation_loss(self.transformer, clips.val_latents, clips.val_text, f"eval/{self.effects[example]}",
                               before=before if factors is not None else None)


def space_clips(reg: Registry, base: Record, pipe, cfg: HypernetRecipe, settings,
                validation: list[str] = ()) -> tuple[list, Clips]:
    """The first `flow.space_effects` effects of the effect space, kept away from the held-out effects
    and the run's `validation` effects as from the held-out ones, and their encoded train-photo clips
    (`flow.space_clips` each, effect-major), rendered and encoded once per base and cached."""
    import hashlib
    import json

    from ..curate import synth_clip
    from ..effects.space import exclusion, sample_effect
    from ..encode import encode_latents, encode_texts, to_video_tensor
    from ..files import atomic_write

    f = cfg.flow
    exclude = exclusion(validation)
    effects = [sample_effect(seed, exclude=exclude) for seed in range(f.space_effects)]
    width, height = settings["size"]
    # the effects themselves are in the key: a changed sampler never reads another sampler's clips
    digest = hashlib.sha256(json.dumps([e.to_json() for e in effects], sort_keys=True).encode()).hexdigest()[:12]
    path = reg.folder("cache", "space") / (f"{base.id}-{f.space_effects}x{f.space_clips}-{cfg.seed}-"
                                           f"{settings['frames']}x{height}x{width}-{digest}.pt")
    if path.is_file():
        cached = torch.load(path, weights_only=True)  # our own cache: tensors only
        return effects, Clips(cached["latents"], cached["text"], cached["latents"][:0], cached["text"][:0])
    latents, text = [], []
    with console.progress("effect space clips", total=len(effects)) as advance:
        for effect in effects:
            made = [synth_clip(effect, i, cfg.seed, settings["frames"], (height, width)) for i in range(f.space_clips)]
            videos = torch.stack([to_video_tensor(clip, settings) for clip, _ in made])
            latents.append(encode_latents(pipe, videos).half())
            text.append(encode_texts(pipe, [data["caption"] for _, data in made], settings["max_sequence_length"]).half())
            advance()
    latents, text = torch.cat(latents), torch.cat(text)
    with atomic_write(path) as tmp:
        torch.save({"latents": latents, "text": text}, tmp)
    return effects, Clips(latents, text, latents[:0], text[:0])


GROUPS = ("unseen", "paraphrase", "validation", "heldout")  # the groups whose R is logged (recovery_sets)


def recovery_sets(examples: list[Example], train: list[int], val: list[int], k: int,
                  held_back: dict[int, list[str]] | None = None) -> dict[str, list[tuple[int, str]]]:
    """The (example, prompt) pairs whose R is logged, by group, with p2e eval run's prompts: an unseen
    paraphrase for (every k-th) train effect, the first prompt of held-out and validation effects;
    and for the same train effects their first held-back training paraphrase (recipe
    validation_paraphrases), if any."""
    sample = train[:: max(1, len(train) // k)][:k] if k else []
    held_back = held_back or {}
    return {"unseen": [(i, examples[i].unseen_prompts[0]) for i in sample if examples[i].unseen_prompts],
            "paraphrase": [(i, held_back[i][0]) for i in sample if held_back.get(i)],
            "validation": [(i, examples[i].prompts[0]) for i in val],
            "heldout": [(i, e.prompts[0]) for i, e in enumerate(examples) if e.split != "train"]}


def recovery_text(metrics: dict) -> str:
    """"; R unseen 0.710; R heldout 0.834": the recovery medians a log row or record has, for humans."""
    return "".join(f"; R {group} {metrics[f'{group}_recovery']:.3f}" for group in GROUPS if f"{group}_recovery" in metrics)


def recoveries(flow: FlowData, sets: dict[str, list[tuple[int, str]]], predict: Callable[[list[str]], Factors],
               reference: Callable[[int], Factors], cache: dict[str, list[float]]) -> dict[str, float]:
    """Median R = (L0 − L_pred)/(L0 − L_ref) per group ({group}_recovery); `cache` keeps each effect's
    [L0, L_ref] (JSON-able, it rides in the checkpoint's meta)."""
    out = {}
    for group, pairs in sets.items():
        if not pairs:
            continue
        pred = predict([p for _, p in pairs])
        values = []
        for k, (i, _) in enumerate(pairs):
            effect = flow.effects[i]
            if effect not in cache:
                cache[effect] = [flow.validation(i, None), flow.validation(i, reference(i))]
            l0, lref = cache[effect]
            lpred = flow.validation(i, [(b[k:k + 1], a[k:k + 1]) for b, a in pred])
            if (r := recovery(l0, lpred, lref)) is not None:
                values.append(r)
        if values:
            out[f"{group}_recovery"] = statistics.median(values)
    return out
