"""Training the hypernetwork (p2e train hypernet): prompts of train effects -> their canonical factors.

Loss per layer: factor MSE in units of the library's typical factor size (factor_weight) plus
the NMSE of the reconstructed ΔW = B·A (delta_weight), computed from r×r Gram matrices, never
forming ΔW. Each step draws `batch_size` (effect, paraphrase) pairs from a generator seeded by
(recipe seed, step), so a resumed run continues exactly; every `eval_every` steps it logs the
ΔW NMSE on held-out effects, on unseen paraphrases of train effects, on `validation_effects`
train effects held back from training (to choose settings without looking at held-out effects) and
on `validation_paraphrases` held back from every train effect (to choose text-side settings without
looking at the unseen paraphrases).
An optional last phase (recipe `flow:`, hypernet/flow.py) trains on the base's flow-matching loss
with the predicted LoRAs applied, and then every evaluation also logs recovery R.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .. import console
from ..canon import low_rank_inner, mean_factors, truncate
from ..errors import P2EError
from ..metrics import delta_nmse
from ..registry import Record, Registry
from ..schemas import HypernetModel, HypernetRecipe
from ..training import (cosine_lr, full_state, load_optimizer_state, make_accelerator, name_seed, shard_fsdp,
                        stop_at_step_boundary)
from .flow import FlowData, recoveries, recovery_sets, recovery_text
from .library import Example
from .model import MODULE_TYPES, HypernetConfig, Hypernetwork, LayerSpec, layer_specs


def hypernet_loss(net: Hypernetwork, pred, target, cfg: HypernetRecipe, plain: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of factor_weight · scaled factor MSE + delta_weight · ΔW NMSE. Rows
    where `plain` is False are mixup rows: their target ΔW mixes two effects and has no canonical
    factors, so only its ΔW term counts (their targets carry 2r factors; the first r are compared)."""
    r = pred[0][0].shape[2]
    factor = torch.stack([((pb - tb[..., :r]) / net.scale_b[i]).pow(2).mean(dim=(1, 2))
                          + ((pa - ta[:, :r]) / net.scale_a[i]).pow(2).mean(dim=(1, 2))
                          for i, ((pb, pa), (tb, ta)) in enumerate(zip(pred, target))]).mean(0)
    if plain is not None:
        factor = factor * plain.to(factor.dtype)
    return (cfg.factor_weight * factor + cfg.delta_weight * delta_nmse(pred, target)).mean()


class Targets:
    """Every example's factors stacked per layer, (examples, out, r) and (examples, r, in), where
    training runs: a batch's targets are one gather per layer, not a stack of per-example tensors
    (on a GPU those small copies, ~1.3k a step, cost more than the network)."""

    def __init__(self, examples: list[Example], device: torch.device | str | None = None):
        self.layers = [(torch.stack([e.factors[i][0] for e in examples]).to(device),
                        torch.stack([e.factors[i][1] for e in examples]).to(device))
                       for i in range(len(examples[0].factors))]

    def pick(self, picks: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.tensor(picks, device=self.layers[0][0].device)
        return [(b[idx], a[idx]) for b, a in self.layers]

    def mixed(self, rows: list[list[tuple[int, float]]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, factors of rank 2r whose product is Σ w · ΔW_e over each row's one or two
        (example, weight) items: B = [√w₁ B₁, √w₂ B₂], A = [√w₁ A₁; √w₂ A₂] (a one-effect row's
        second half is zero)."""
        device = self.layers[0][0].device
        pairs = [row if len(row) == 2 else [row[0], (row[0][0], 0.0)] for row in rows]
        first, second = (torch.tensor([p[k][0] for p in pairs], device=device) for k in (0, 1))
        w1, w2 = (torch.tensor([p[k][1] for p in pairs], device=device).sqrt()[:, None, None] for k in (0, 1))
        return [(torch.cat([b[first] * w1, b[second] * w2], dim=2), torch.cat([a[first] * w1, a[second] * w2], dim=1))
                for b, a in self.layers]


def network_config(m: HypernetModel, layers: list[LayerSpec], rank: int, text_dim: int) -> HypernetConfig:
    """The network a recipe's `model:` section describes, for a layer table and LoRA rank."""
    if m.dim % m.heads:
        raise P2EError(f"model.dim {m.dim} is not a multiple of model.heads {m.heads}")
    # the recipe's architecture keys are HypernetConfig's, by name (tests/unit/test_hypernet_model.py)
    shared = {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}
    return HypernetConfig(**shared, rank=rank, text_dim=text_dim, max_blocks=max(64, max(s.block for s in layers) + 1))


def build_network(cfg: HypernetRecipe, layers: list[LayerSpec], rank: int, text_dim: int,
                  train: list[Example]) -> Hypernetwork:
    """A fresh network for the recipe; its output scales from the train library."""
    config = dataclasses.replace(network_config(cfg.model, layers, rank, text_dim), prior_rank=cfg.shrink_rank)
    torch.manual_seed(cfg.seed)
    net = Hypernetwork(config, layers)
    with torch.no_grad():  # output units: each layer's typical factor size over the train library
        for i in range(len(layers)):
            net.scale_b[i] = float(torch.stack([e.factors[i][0] for e in train]).pow(2).mean().sqrt().clamp_min(1e-8))
            net.scale_a[i] = float(torch.stack([e.factors[i][1] for e in train]).pow(2).mean().sqrt().clamp_min(1e-8))
    return net


class Texts:
    """Every prompt's token embeddings, encoded once (the text encoder is frozen)."""

    def __init__(self, encoder, prompts: list[str]):
        self.index = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        embeds, mask = encoder(list(self.index))
        self.embeds, self.mask = embeds, mask

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.index[p] for p in prompts]
        mask = self.mask[rows]
        width = int(mask.sum(1).max())
        return self.embeds[rows, :width], mask[:, :width]

    def weighted(self, rows: list[list[tuple[str, float]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, float token weights) for rows of (prompt, weight): each row's prompts'
        tokens side by side, every token carrying its prompt's weight (mixup)."""
        tokens, weights = [], []
        for row in rows:
            picked = [(self.embeds[self.index[p]][self.mask[self.index[p]]], w) for p, w in row]
            tokens.append(torch.cat([t for t, _ in picked]))
            weights.append(torch.cat([torch.full((len(t),), w) for t, w in picked]))
        embeds = torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True)
        return embeds, torch.nn.utils.rnn.pad_sequence(weights, batch_first=True).to(embeds.device)

    def to(self, device) -> None:
        self.embeds, self.mask = self.embeds.to(device), self.mask.to(device)


@torch.no_grad()
def evaluate(predict, source, targets: Targets, pairs: list[tuple[int, str]], batch: int = 64) -> float | None:
    """Mean ΔW NMSE over (example, prompt) pairs, or None when there are none; predict(source,
    prompts) is the network's forward pass from the W0 encoding (or W0 itself)."""
    if not pairs:
        return None
    total = 0.0
    for start in range(0, len(pairs), batch):
        chunk = pairs[start:start + batch]
        pred = predict(source, [p for _, p in chunk])
        total += float(delta_nmse(pred, targets.pick([e for e, _ in chunk])).sum())
    return total / len(pairs)


@dataclass
class LibrarySplit:
    """Which library examples a run trains on, validates on and measures, and the (example index,
    prompt) pairs of each measure. `examples` has the recipe's prompt changes applied (validation
    paraphrases taken out, extra paraphrases added)."""

    examples: list[Example]
    train: list[int]  # trained on
    val: list[int]  # validation effects: train-split effects held back to choose settings by
    held_back: dict[int, list[str]]  # validation paraphrases per train effect
    pairs: list[tuple[int, str]]  # the training pairs
    paraphrase_pairs: list[tuple[int, str]]
    heldout_pairs: list[tuple[int, str]]  # held-out (test) effects: measured, never chosen by
    val_pairs: list[tuple[int, str]]
    unseen_pairs: list[tuple[int, str]]  # train effects' unseen paraphrases


def split_library(cfg: HypernetRecipe, examples: list[Example]) -> LibrarySplit:
    """The recipe's split of a canonical library (P2EError on a split that leaves nothing to train)."""
    train = [i for i, e in enumerate(examples) if e.split == "train"]
    if not train:
        raise P2EError("the library has no train-split effects to learn from")
    # validation effects: every k-th train effect held back, so steps and settings can be chosen
    # without looking at the held-out (test) effects
    n_val = cfg.validation_effects or len(cfg.validation_names)
    if n_val and n_val >= len(train):
        raise P2EError(f"validation_effects {n_val} leaves none of the {len(train)} train effects to train on")
    if cfg.validation_effects and cfg.validation_names:
        raise P2EError("set validation_effects (every k-th train effect) or validation_names, not both")
    if cfg.shrink_rank and not n_val:
        raise P2EError("shrink_rank fits its factor on validation effects, and validation_effects is 0",
                       hint="set validation_effects (e.g. --set validation_effects=8) or validation_names, or shrink_rank=0")
    if cfg.shrink_rank and cfg.sharding == "fsdp":
        raise P2EError("shrink_rank is not supported with sharding: fsdp", hint="set shrink_rank=0")
    if cfg.flow.steps and cfg.sharding == "fsdp":
        raise P2EError("the flow phase (flow.steps) is not supported with sharding: fsdp", hint="set flow.steps=0")
    if cfg.validation_names:
        by_name = {examples[i].effect: i for i in train}
        unknown = [n for n in cfg.validation_names if n not in by_name]
        if unknown:
            raise P2EError(f"validation_names {', '.join(unknown)} are not train effects of the library",
                           hint="name train-split effects that have a reference LoRA (p2e effects ls --split train)")
        val = [by_name[n] for n in cfg.validation_names]
    else:
        val = train[:: len(train) // n_val][:n_val] if n_val else []
    train = [i for i in train if i not in val]
    if val:
        console.info(f"validation effects (not trained on): {', '.join(examples[i].effect for i in val)}")
    held_back: dict[int, list[str]] = {}  # validation paraphrases: the last n of each train effect's prompts
    if cfg.validation_paraphrases:
        n = cfg.validation_paraphrases
        held_back = {i: examples[i].prompts[-n:] for i in train if len(examples[i].prompts) > n}
        examples = [dataclasses.replace(e, prompts=e.prompts[:-n]) if i in held_back else e for i, e in enumerate(examples)]
    if cfg.extra_paraphrases:
        examples = [dataclasses.replace(e, prompts=e.prompts + e.extra_prompts) if i in train else e
                    for i, e in enumerate(examples)]
    pairs = [(i, p) for i in train for p in examples[i].prompts]
    paraphrase_pairs = [(i, p) for i, held in held_back.items() for p in held]
    heldout_pairs = [(i, examples[i].prompts[0]) for i, e in enumerate(examples) if e.split != "train"]
    val_pairs = [(i, examples[i].prompts[0]) for i in val]
    unseen_pairs = [(i, p) for i in train for p in examples[i].unseen_prompts]
    return LibrarySplit(examples, train, val, held_back, pairs, paraphrase_pairs, heldout_pairs, val_pairs, unseen_pairs)


def train_hypernet(reg: Registry, cfg: HypernetRecipe, base: Record, names: list[str], examples: list[Example],
                   weights: list[torch.Tensor], text_encoder, run: Record | None,
                   resume: dict[str, Any] | None, checkpoint,
                   init: dict[str, torch.Tensor] | None = None) -> tuple[Hypernetwork, dict[str, Any]]:
    """Train (or resume) the network, from `init`'s weights if given (a state dict of this recipe's
    shape); return it and its metrics/history. The phases: setup (HypernetTrainer), the ΔW steps and
    the flow steps (HypernetTrainer.train), then the shrink fit and the gathered network (finish)."""
    if not cfg.steps and not (init and cfg.flow.steps):
        raise P2EError("the recipe trains nothing: steps is 0" + ("" if init else " and no init network is given"),
                       hint="set steps > 0, or init=HYPERNET with flow.steps > 0")
    trainer = HypernetTrainer(reg, cfg, base, names, examples, weights, text_encoder, run, resume, checkpoint, init)
    trainer.train()
    return trainer.finish()


class HypernetTrainer:
    """One hypernetwork training run: the library split, the network, its optimizer under accelerate,
    and the step functions of both objectives (the ΔW loss on the references, then the flow loss)."""

    def __init__(self, reg: Registry, cfg: HypernetRecipe, base: Record, names: list[str], examples: list[Example],
                 weights: list[torch.Tensor], text_encoder, run: Record | None, resume: dict[str, Any] | None,
                 checkpoint, init: dict[str, torch.Tensor] | None):
        from ..wan import base_config, layer_table

        table = {layer.name: layer for layer in layer_table(base_config(base), MODULE_TYPES)}
        missing = [n for n in names if n not in table]
        if missing:
            raise P2EError(f"the library's LoRAs adapt layers base {base.name} does not have, e.g. {missing[0]}")
        self.cfg, self.run, self.checkpoint, self.weights, self.text_encoder = cfg, run, checkpoint, weights, text_encoder
        self.layers = layer_specs(table[n] for n in names)
        self.split = split = split_library(cfg, examples)
        self.examples = split.examples
        self.accelerator = accelerator = make_accelerator(cfg.mixed_precision)
        self.rank_, self.world = accelerator.process_index, accelerator.num_processes
        # targets and prompt embeddings live on the device (W0 stays put: the tokenizer moves each layer)
        self.device = device = accelerator.device
        # the flow phase's base and clips; with it on, every evaluation also logs recovery R
        self.flow = (FlowData(reg, base, names, self.examples, cfg, device, [self.examples[i].effect for i in split.val])
                     if cfg.flow.steps else None)
        self.recovery_pairs = (recovery_sets(self.examples, split.train, split.val, cfg.flow.recovery_effects, split.held_back)
                               if self.flow else {})
        self.texts = Texts(text_encoder, [p for _, p in split.pairs + split.heldout_pairs + split.val_pairs
                                          + split.unseen_pairs + split.paraphrase_pairs]
                           + [p for group in self.recovery_pairs.values() for _, p in group]
                           + [p for e in (self.flow.space if self.flow else []) for p in e.prompts])
        self.rank = self.examples[0].factors[0][0].shape[1]
        net = build_network(cfg, self.layers, self.rank, text_encoder.dim, [self.examples[i] for i in split.train])
        if init is not None:
            try:
                net.load_state_dict(init)
            except RuntimeError as e:
                raise P2EError(f"init hypernetwork {cfg.init} does not have this recipe's model shape: {str(e).splitlines()[0]}",
                               hint="use the recipe (model: section, shrink_rank) it was trained with") from e
        self.targets = Targets(self.examples, device)
        self.texts.to(device)
        self.sharded = cfg.sharding == "fsdp" and self.world > 1
        self.meta: dict[str, Any] = {"step": 0, "history": [], "validation_effects": [self.examples[i].effect for i in split.val]}
        if resume is not None:
            net.load_state_dict(resume["tensors"])
            self.meta = resume["meta"]
        if self.sharded:  # FSDP2: one shard unit per fusion layer (the bulk of a large network), the rest in the root
            net = shard_fsdp(net, [layer for predictor in net.predictors for layer in predictor.fusion])
        optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        if not self.sharded:
            net, optimizer = accelerator.prepare(net, optimizer)
        if resume is not None:
            load_optimizer_state(net, optimizer, resume["optimizer"], self.sharded)
        self.net, self.optimizer = net, optimizer
        self.model = net if self.sharded else accelerator.unwrap_model(net)
        self.started_from_init = init is not None

    # -- the network's forward passes ------------------------------------------------------------

    def predict(self, source, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        embeds, mask = self.texts(prompts)
        with self.accelerator.autocast():
            pred = self.net(source, embeds, mask)
        return [(b.float(), a.float()) for b, a in pred]

    def predict_rows(self, source, rows: list[list[tuple[str, float]]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """predict() for rows of weighted prompts (Texts.weighted: mixup)."""
        embeds, token_weights = self.texts.weighted(rows)
        with self.accelerator.autocast():
            pred = self.net(source, embeds, token_weights)
        return [(b.float(), a.float()) for b, a in pred]

    # -- the two objectives ----------------------------------------------------------------------

    def delta_loss(self, step: int) -> torch.Tensor:
        """A ΔW-phase step's loss: a batch of (effect, training prompt) pairs drawn from (seed, step)."""
        cfg, pairs = self.cfg, self.split.pairs
        g = torch.Generator().manual_seed(name_seed(cfg.seed, "hypernet", step))
        batch = [pairs[j] for j in torch.randint(len(pairs), (cfg.batch_size,), generator=g).tolist()]
        if cfg.mixup > 0:
            return self.mixed_loss(batch, g)
        batch = batch[self.rank_::self.world]
        pred = self.predict(self.weights, [p for _, p in batch])
        return hypernet_loss(self.model, pred, self.targets.pick([e for e, _ in batch]), cfg)

    def mixed_loss(self, batch: list[tuple[int, str]], g: torch.Generator) -> torch.Tensor:
        """The ΔW loss of a batch with mixup. The first `mixup` share of the batch
        become mixtures λ·(effect, prompt) + (1 − λ)·(another pair): both prompts' tokens weighted λ,
        1 − λ, target ΔW = λ·ΔW₁ + (1 − λ)·ΔW₂. It teaches the network to move smoothly between
        effects in prompt space (held-out effects lie between train effects), where plain training
        memorised the train prompts. The rest are plain (effect, prompt) pairs."""
        pairs = self.split.pairs
        n = round(self.cfg.mixup * len(batch))
        partners = [pairs[j] for j in torch.randint(len(pairs), (n,), generator=g).tolist()]
        lams = torch.rand(n, generator=g).tolist()
        rows = [([(p, lam), (p2, 1 - lam)], [(e, lam), (e2, 1 - lam)]) for (e, p), (e2, p2), lam in zip(batch, partners, lams)]
        rows += [([(p, 1.0)], [(e, 1.0)]) for e, p in batch[n:]]
        rows = rows[self.rank_::self.world]
        pred = self.predict_rows(self.weights, [text for text, _ in rows])
        target = self.targets.mixed([effects for _, effects in rows])
        plain = torch.tensor([len(effects) == 1 for _, effects in rows], device=self.device)
        return hypernet_loss(self.model, pred, target, self.cfg, plain=plain)

    def flow_loss(self, step: int) -> torch.Tensor:
        """A flow-phase step's loss: the samples' flow-matching loss through the base with their
        predicted LoRAs, plus anchor x the ΔW loss (hypernet/flow.py)."""
        cfg = self.cfg
        batch, latents, text, sigmas, noise = self.flow.batch(self.split.pairs, step - cfg.steps, self.rank_, self.world)
        pred = self.predict(self.weights, [p for _, p in batch])
        loss = self.flow.loss(pred, latents, text, sigmas, noise)
        library = [k for k, (e, _) in enumerate(batch) if e is not None]  # sampled effects have no reference
        if cfg.flow.anchor and library:
            anchored = [(b[library], a[library]) for b, a in pred]
            anchor = hypernet_loss(self.model, anchored, self.targets.pick([batch[k][0] for k in library]), cfg)
            loss = loss + cfg.flow.anchor * anchor * len(library) / len(batch)
        return loss

    # -- checkpoints and measurements ------------------------------------------------------------

    def save(self, step: int) -> None:
        if self.checkpoint is None and not self.sharded:
            return
        tensors, optimizer_state = full_state(self.net if self.sharded else self.model, self.optimizer, self.sharded)  # every process (FSDP)
        if self.checkpoint is not None and self.accelerator.is_main_process:
            self.checkpoint(tensors, optimizer_state, {**self.meta, "step": step})

    def measure(self, step: int, loss: float | None) -> None:
        split, targets, model = self.split, self.targets, self.model
        model.eval()
        # W0 encoded once for all the measures; a sharded network gathers its parameters only
        # inside forward, so it encodes W0 there, per chunk of prompts
        with torch.no_grad(), self.accelerator.autocast():
            source = self.weights if self.sharded else model.encode_weights(self.weights)
        row = {"step": step, "loss": loss, "heldout_nmse": evaluate(self.predict, source, targets, split.heldout_pairs),
               "unseen_prompt_nmse": evaluate(self.predict, source, targets, split.unseen_pairs),
               "train_nmse": evaluate(self.predict, source, targets, split.pairs[:: max(1, len(split.pairs) // 64)]),
               "validation_nmse": evaluate(self.predict, source, targets, split.val_pairs),
               "paraphrase_nmse": evaluate(self.predict, source, targets, split.paraphrase_pairs)}
        if self.flow is not None:  # recovery R as p2e eval run measures it (L0 and L_ref cached in meta)
            with torch.no_grad():
                row.update(recoveries(self.flow, self.recovery_pairs, lambda prompts: self.predict(source, prompts),
                                      lambda i: targets.pick([i]), self.meta.setdefault("flow_losses", {})))
        model.train()
        self.meta["history"].append(row)
        console.info("step {step}: train ΔW nmse {t:.4f}, unseen paraphrases {u}, held-out effects {h}".format(
            step=step, t=row["train_nmse"], u=_fmt(row["unseen_prompt_nmse"]), h=_fmt(row["heldout_nmse"]))
            + (f", validation effects {row['validation_nmse']:.4f}" if split.val else "")
            + (f", validation paraphrases {row['paraphrase_nmse']:.4f}" if split.paraphrase_pairs else "")
            + recovery_text(row))

    # -- the phases ------------------------------------------------------------------------------

    def train(self) -> None:
        """The ΔW steps (cfg.steps), then the flow steps (cfg.flow.steps), from where a resumed run stopped."""
        cfg, meta, optimizer, accelerator = self.cfg, self.meta, self.optimizer, self.accelerator
        total = cfg.steps + cfg.flow.steps
        if self.started_from_init and not meta["history"]:
            self.measure(0, None)  # where the init network starts
        self.net.train()
        with console.progress("train hypernet", total=total) as advance, stop_at_step_boundary() as stop_requested:
            advance(meta["step"])
            for step in range(meta["step"], total):
                if step == cfg.steps:  # a new objective: Adam's moments of the ΔW loss would misscale its steps
                    getattr(optimizer, "optimizer", optimizer).state.clear()
                for group in optimizer.param_groups:
                    group["lr"] = (cosine_lr(step, cfg.steps, cfg.optim.lr, cfg.optim.warmup_steps) if step < cfg.steps else
                                   cosine_lr(step - cfg.steps, cfg.flow.steps, cfg.flow.lr, cfg.flow.warmup_steps))
                loss = self.flow_loss(step) if step >= cfg.steps else self.delta_loss(step)
                accelerator.backward(loss)
                if self.sharded:
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                else:
                    accelerator.clip_grad_norm_(self.net.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                done = step + 1
                meta["step"] = done
                advance(loss=loss.item())
                if done % cfg.eval_every == 0 or done in (cfg.steps, total):
                    self.measure(done, loss.item())
                if stop_requested():
                    self.save(done)
                    console.info(f"interrupted: checkpoint saved at step {done}; continue with --resume {self.run.id if self.run else ''}")
                    raise KeyboardInterrupt
                if done % cfg.checkpoint_every == 0 and done < total:
                    self.save(done)

    def finish(self) -> tuple[Hypernetwork, dict[str, Any]]:
        """The shrink fit (shrink_rank), and the whole network on the main process (FSDP gathers it)."""
        cfg, meta, model, split, targets = self.cfg, self.meta, self.model, self.split, self.targets
        if cfg.shrink_rank:
            model.eval()
            with torch.no_grad():
                source = model.encode_weights(self.weights)
            meta["shrink"] = fit_shrink(model, targets, split.train, split.val_pairs, lambda prompts: self.predict(source, prompts))
            final = lambda prompts: [truncate(b, a, self.rank) for b, a in model.shrunk(self.predict(source, prompts))]  # noqa: E731
            meta["shrink"]["heldout_nmse"] = evaluate(lambda _, prompts: final(prompts), None, targets, split.heldout_pairs)
            meta["shrink"]["validation_nmse"] = evaluate(lambda _, prompts: final(prompts), None, targets, split.val_pairs)
            console.info("shrunk toward the library mean with alpha {alpha:.3f}: validation effects {v:.4f} (was {b:.4f}), "
                         "held-out effects {h}".format(alpha=meta["shrink"]["alpha"], v=meta["shrink"]["validation_nmse"],
                                                       b=meta["history"][-1]["validation_nmse"], h=_fmt(meta["shrink"]["heldout_nmse"])))
        if self.sharded:  # the main process gets the whole network back (every process takes part in gathering it)
            tensors, _ = full_state(self.net, self.optimizer, self.sharded)
            if self.accelerator.is_main_process:
                model = build_network(cfg, self.layers, self.rank, self.text_encoder.dim, [self.examples[i] for i in split.train])
                model.load_state_dict(tensors)
        return model.eval(), meta


@torch.no_grad()
def fit_shrink(net: Hypernetwork, targets: Targets, train: list[int], val_pairs: list[tuple[int, str]],
               predict) -> dict[str, float]:
    """Store the train library's mean ΔW (its best rank-prior_rank approximation) as the network's
    prior, and set the shrink factor α = argmin Σ ‖α·P + (1 − α)·M − T‖² / ‖T‖² over validation
    (effect, prompt) pairs and layers (closed form, clamped to [0, 1]): P predicted, M the mean,
    T the validation effect's ΔW. α < 1 says the network is overconfident on effects it never saw."""
    rank = net.config.prior_rank
    for i, (tb, ta) in enumerate(targets.layers):
        b, a = mean_factors([(tb[e], ta[e]) for e in train], rank)
        prior_b, prior_a = net.prior(i)
        prior_b.copy_(b)
        prior_a.copy_(a)
    pred = predict([p for _, p in val_pairs])
    num = den = 0.0
    for i, ((pb, pa), (tb, ta)) in enumerate(zip(pred, targets.pick([e for e, _ in val_pairs]))):
        mb, ma = (t.expand(len(val_pairs), *t.shape) for t in net.prior(i))
        pt, pm, mt = low_rank_inner(pb, pa, tb, ta), low_rank_inner(pb, pa, mb, ma), low_rank_inner(mb, ma, tb, ta)
        pp, mm, tt = low_rank_inner(pb, pa, pb, pa), low_rank_inner(mb, ma, mb, ma), low_rank_inner(tb, ta, tb, ta)
        weight = 1.0 / tt.clamp_min(1e-12)
        num += float((weight * (pt - pm - mt + mm)).sum())  # <P − M, T − M>
        den += float((weight * (pp - 2 * pm + mm)).sum())  # ‖P − M‖²
    alpha = min(1.0, max(0.0, num / den)) if den > 0 else 1.0
    net.shrink.fill_(alpha)
    return {"alpha": alpha}


def init_weights(reg: Registry, ref: str, base: Record, names: list[str]) -> dict[str, torch.Tensor]:
    """The state dict of the hypernetwork `ref` (a file, or a registry hypernet id/name) to start
    from; it must adapt the same layers."""
    from ..catalog import resolve_hypernet
    from .store import load_hypernet

    net, meta, _ = load_hypernet(resolve_hypernet(reg, ref, base)[0])
    if [row[0] for row in meta["layers"]] != names:
        raise P2EError(f"init hypernetwork {ref} adapts other layers than this library", hint="start from one trained on this base")
    return net.state_dict()


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run_training(cfg: HypernetRecipe, resume: str | None = None) -> Record | None:
    """`p2e train hypernet`: gather the library, train with checkpoints on a run record, and
    register the result as a `hypernet` record (weights file, recipe, library, metrics). Under
    `accelerate launch` only the main process registers and returns it; the others return None."""
    from ..canon import base_weights
    from ..recipes import parse_recipe
    from ..registry import open_registry
    from ..runs import load_checkpoint, save_checkpoint
    from ..training import distributed_state
    from ..catalog import resolve_base
    from ..wan import base_path
    from ..lora_store import canonicalize_references
    from .library import canonical_library, describe
    from .store import save_hypernet
    from .text import TextEncoder

    state = distributed_state()
    if not state.is_main_process:
        console.mode.quiet = True
    reg = open_registry()
    run = None
    if resume is not None:
        run = reg.get(resume, "run")
        if run.data.get("task") != "train hypernet":
            raise P2EError(f"run {run.id} is not a hypernetwork training run", hint="see p2e ls run")
        if run.data.get("status") == "done":
            raise P2EError(f"run {run.id} already finished", hint="start a new run instead of --resume")
        cfg = parse_recipe(run.data["recipe"], origin="the run's recipe")
    base = resolve_base(cfg.base)
    canonicalize_references(reg, base)  # a fresh install: the shipped library, canonicalized here
    names, examples = canonical_library(reg, base, cfg.target)
    if run is not None and [e.record for e in examples] != run.data["library"]:
        raise P2EError(f"the canonical library changed since run {run.id} started", hint="start a new run")
    library = describe(examples, cfg.extra_paraphrases)
    text = TextEncoder(cfg.text_encoder)
    # W0 stays in memory for the whole run: kept in bf16 when training in bf16 (28 GB for a 14B base)
    keep = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float32
    weights = [w.to(keep) for _, w in base_weights(base_path(base) / "transformer", [f"{n}.weight" for n in names])]
    if run is None and state.is_main_process:
        run = reg.add("run", data={"task": "train hypernet", "recipe": asdict(cfg), "base": base.id, "status": "running",
                                   "library": [e.record for e in examples], "dataset": library}, parents=[base.id])
        console.info(f"run {run.id}: hypernetwork on base {base.name or base.id} (resume with --resume {run.id})")
    checkpoint = (lambda t, o, m: save_checkpoint(reg, run, ["hypernet"], t, o, m)) if run is not None else None
    net, meta = train_hypernet(reg, cfg, base, names, examples, weights, text,
                               run, load_checkpoint(reg, run, ["hypernet"]) if resume else None, checkpoint,
                               init=init_weights(reg, cfg.init, base, names) if cfg.init else None)
    if not state.is_main_process:
        state.wait_for_everyone()
        return None
    # what the network learned: the train effects less those held back for validation
    train = [e for e in examples if e.split == "train" and e.effect not in meta.get("validation_effects", [])]
    final = dict(meta["history"][-1]) if meta["history"] else {}
    if meta.get("shrink"):  # what the network writes now: after shrinking (the history keeps the raw figures)
        final.update(heldout_nmse=meta["shrink"]["heldout_nmse"], validation_nmse=meta["shrink"]["validation_nmse"],
                     shrink_alpha=meta["shrink"]["alpha"])
    with reg.artifact(".safetensors") as pending:
        save_hypernet(pending.path, net, text_encoder=cfg.text_encoder, layer_table=base.data["layer_table"],
                      target=cfg.target, library=[(e.effect, e.prompts[0]) for e in train],
                      library_embeddings=text.sentence([e.prompts[0] for e in train]), metrics=final)
    record = reg.add("hypernet", name=cfg.name or None, parents=[base.id, run.id], files={"weights": pending.ref}, data={
        "base": base.id, "base_name": base.name, "layer_table": base.data["layer_table"], "recipe": asdict(cfg),
        "run": run.id, "library": [e.record for e in examples], "dataset": library, "rank": net.config.rank,
        "layers": len(names), "parameters": sum(p.numel() for p in net.parameters()), "metrics": final,
        "validation_effects": meta.get("validation_effects", []),
        "history": meta["history"]})
    reg.update(run.id, data={"status": "done", "checkpoint": None, "hypernet": record.id})
    state.wait_for_everyone()
    return record
