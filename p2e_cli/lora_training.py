"""The LoRA training loop: one or several effects' LoRAs trained in one batched pass.

Every effect gets its own adapter (adapters.StackedLoRA) and its own `batch_size` samples per
step; the loss is the sum over effects of each effect's mean loss, so an adapter's gradient does
not depend on which other effects share the pass, and each effect's data is drawn from a seed of
(recipe seed, effect, step). Training effects together or one by one therefore follows the same
trajectory (up to float rounding), and a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import adapters, console
from .errors import P2EError
from .schemas import LoraRecipe
from .training import (cosine_lr, flow_matching_loss, make_accelerator, name_seed, shifted_sigmas, stop_at_step_boundary,
                       validation_loss)


@dataclass
class EffectSet:
    """One LoRA to train: encoded clips, fixed validation clips, optional starting factors."""

    name: str
    latents: torch.Tensor  # (N, C, F, h, w), normalised
    text: torch.Tensor  # (N, L, D): each clip's caption embedding
    val_latents: torch.Tensor
    val_text: torch.Tensor
    init: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    init_alpha: float | None = None


@dataclass
class GroupResult:
    factors: list[dict[str, tuple[torch.Tensor, torch.Tensor]]]
    base_loss: list[float]
    history: list[dict[str, Any]] = field(default_factory=list)  # {"step", "effect", "val"}

    def final_loss(self, i: int) -> float:
        return [h["val"] for h in self.history if h["effect"] == i][-1]


def step_batch(sets: list[EffectSet], cfg: LoraRecipe, step: int, shift: float, rank: int = 0, world: int = 1):
    """The samples of one step: cfg.batch_size per effect, drawn from (seed, effect, step); of
    those, process `rank` of `world` takes every world-th one (data parallel under accelerate)."""
    latents, text, route, sigmas, noise = [], [], [], [], []
    mine = slice(rank, None, world)
    for i, s in enumerate(sets):
        g = torch.Generator().manual_seed(name_seed(cfg.seed, s.name, step))
        idx = torch.randint(len(s.latents), (cfg.batch_size,), generator=g)
        x = s.latents[idx].float()
        sigma = shifted_sigmas(torch.rand(cfg.batch_size, generator=g), shift)
        eps = torch.randn(x.shape, generator=g)
        latents.append(x[mine])
        text.append(s.text[idx][mine].float())
        route.append(torch.full((cfg.batch_size // world,), i))
        sigmas.append(sigma[mine])
        noise.append(eps[mine])
    return torch.cat(latents), torch.cat(text), torch.cat(route), torch.cat(sigmas), torch.cat(noise)


def evaluate(transformer, layers, sets: list[EffectSet], weight: float) -> list[float]:
    """Each effect's validation loss with its own adapter at `weight` (0 = the bare base)."""
    losses = []
    for i, s in enumerate(sets):
        def routing(rows, i=i):
            return adapters.routed(layers, torch.full((len(rows),), i), torch.full((len(rows),), weight))

        losses.append(validation_loss(transformer, s.val_latents, s.val_text, s.name, before=routing))
    return losses


def train_group(transformer, layer_names: list[str], sets: list[EffectSet], cfg: LoraRecipe, *, shift: float,
                resume: dict[str, Any] | None = None,
                checkpoint: Callable[[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]], None] | None = None,
                preview: Callable[[int, dict[str, adapters.StackedLoRA]], None] | None = None,
                description: str = "train lora") -> GroupResult:
    """Train one LoRA per EffectSet on a frozen transformer; return their factors and losses.

    `checkpoint(tensors, optimizer_state, meta)` is called every cfg.checkpoint_every steps and on
    Ctrl-C; `resume` is what it was given last time ({"tensors", "optimizer", "meta"}).
    `preview(step, layers)` is called every cfg.preview_every steps (it must not touch the RNGs
    training draws from: every draw here comes from its own seeded generator)."""
    accelerator = make_accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.batch_size % world:
        raise P2EError(f"batch_size {cfg.batch_size} does not split over {world} processes",
                       hint=f"use --set batch_size={cfg.batch_size - cfg.batch_size % world or world}")
    init_seeds = [name_seed(cfg.seed, "init") if cfg.init == "shared" else name_seed(cfg.seed, s.name, "init")
                  for s in sets]
    layers = adapters.inject(transformer, layer_names, init_seeds, cfg.rank, cfg.alpha)
    for i, s in enumerate(sets):
        if s.init is not None:
            adapters.load_factors(layers, i, s.init, s.init_alpha)
    params = adapters.parameters(layers)
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    start, meta = 0, {"history": [], "base_loss": None}
    if resume is not None:
        with torch.no_grad():
            for name, layer in layers.items():
                layer.A.copy_(resume["tensors"][f"{name}.A"])
                layer.B.copy_(resume["tensors"][f"{name}.B"])
        optimizer.load_state_dict(resume["optimizer"])
        meta = resume["meta"]
        start = meta["step"]
    try:
        transformer, optimizer = accelerator.prepare(transformer, optimizer)
        transformer.eval()  # no dropout anywhere; adapters train through autograd alone

        def save(step: int) -> None:
            if checkpoint is not None and accelerator.is_main_process:
                tensors = {f"{n}.{p}": getattr(l, p).detach().contiguous() for n, l in layers.items() for p in ("A", "B")}
                checkpoint(tensors, optimizer.state_dict(), {**meta, "step": step})

        if meta["base_loss"] is None:
            meta["base_loss"] = evaluate(transformer, layers, sets, weight=0.0)
            # step 0: where each LoRA starts (the base's loss, or a given init's: fine-tune curves start there)
            start_loss = evaluate(transformer, layers, sets, weight=1.0) if any(s.init for s in sets) else meta["base_loss"]
            meta["history"] += [{"step": 0, "effect": i, "val": value} for i, value in enumerate(start_loss)]
        with console.progress(description, total=cfg.steps) as advance, stop_at_step_boundary() as stop_requested:
            advance(start)
            for step in range(start, cfg.steps):
                lr = cosine_lr(step, cfg.steps, cfg.optim.lr, cfg.optim.warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                latents, text, route, sigmas, noise = step_batch(sets, cfg, step, shift, rank, world)
                with adapters.routed(layers, route):
                    per_sample = flow_matching_loss(transformer, latents, text, sigmas, noise)
                # each process's mean over its share; accelerate averages gradients over processes
                loss = per_sample.view(len(sets), cfg.batch_size // world).mean(1).sum()
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                done = step + 1
                if done % cfg.validate_every == 0 or done == cfg.steps:
                    for i, value in enumerate(evaluate(transformer, layers, sets, weight=1.0)):
                        meta["history"].append({"step": done, "effect": i, "val": value})
                advance(loss=loss.item() / len(sets))
                if preview is not None and cfg.preview_every and done % cfg.preview_every == 0 and accelerator.is_main_process:
                    preview(done, layers)
                if stop_requested():
                    save(done)
                    console.info(f"interrupted: checkpoint saved at step {done}; continue with --resume")
                    raise KeyboardInterrupt
                if done % cfg.checkpoint_every == 0 and done < cfg.steps:
                    save(done)
    finally:
        adapters.remove(accelerator.unwrap_model(transformer), layers)
    return GroupResult([adapters.factors(layers, i) for i in range(len(sets))], meta["base_loss"], meta["history"])
