"""A LoRA training job, start to finish: gather each effect's clips (synthesising library clips
that are missing), report the dataset, encode it, keep a `run` record with checkpoints, train in
batched groups (lora_training.train_group), and write + register one LoRA per effect.

Used by `p2e train lora` (kind reference) and `p2e finetune` (kind finetuned, with --init).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import console
from . import curate
from . import effects as fx
from .catalog import resolve_base
from .encode import EncodeReport, encode_clips, load_encoded
from .errors import P2EError
from .lora_io import LoraFile, LoraLayer, write_lora
from .lora_training import EffectSet, GroupResult, train_group
from .records import LoraData, is_on, register_lora
from .registry import Record, Registry
from .runs import load_checkpoint, save_checkpoint
from .schemas import LoraRecipe
from .wan import base_settings, layer_table, load_pipeline


@dataclass
class EffectData:
    """What one effect trains and validates on."""

    effect: str
    prompt: str
    train: list[Record]
    val: list[Record]
    notes: list[str] = field(default_factory=list)


def gather(reg: Registry, effect: str, cfg: LoraRecipe, settings: dict[str, Any]) -> EffectData:
    """Training clips (train photos) and validation clips (held-out photos) of an effect. Library
    effects get missing clips synthesised; real effects hold out their last clips for validation."""
    size = tuple(settings["size"][::-1])
    library = effect in fx.effect_names()
    notes = []
    if library:
        curate.effect_record(reg, effect)
        for photos, wanted in (("train", cfg.clips_per_effect), ("heldout", cfg.val_clips)):
            have = len(curate.list_clips(reg, effect, photos))
            if have < wanted:
                report = curate.synth(reg, [fx.get_effect(effect)], wanted, settings["frames"], size,
                                      seed=cfg.seed, photos=photos)
                notes.append(f"synthesised {len(report.added)} {photos}-photo clips")
        train = curate.list_clips(reg, effect, "train")
        val = curate.list_clips(reg, effect, "heldout")[: cfg.val_clips]
        prompt = fx.get_effect(effect).prompts[0]
    else:
        clips = curate.list_clips(reg, effect)
        if len(clips) < 2:
            raise P2EError(f"effect {effect!r} has {len(clips)} clip(s); training needs at least 2",
                           hint="add clips with p2e curate add DIR --effect NAME, or name a library effect (p2e effects ls)")
        held = max(1, min(cfg.val_clips, len(clips) // 5))
        train, val = clips[:-held], clips[-held:]
        notes.append(f"held out the last {held} real clip(s) for validation")
        prompt = train[0].data.get("caption") or effect
    if len(train) > cfg.clips_per_effect:
        notes.append(f"using {cfg.clips_per_effect} of {len(train)} training clips (recipe clips_per_effect)")
        train = train[: cfg.clips_per_effect]
    return EffectData(effect, prompt, train, val, notes)


def encode_all(reg: Registry, base: Record, pipe, data: list[EffectData]) -> EncodeReport:
    clips = [c for d in data for c in d.train + d.val]
    report = encode_clips(reg, base, clips, pipe)
    skipped = {clip for clip, _ in report.skipped}
    for d in data:
        d.train = [c for c in d.train if c.id not in skipped]
        d.val = [c for c in d.val if c.id not in skipped]
        if not d.train or not d.val:
            raise P2EError(f"effect {d.effect!r} has no usable {'training' if not d.train else 'validation'} clips "
                           f"for base {base.name or base.id}", hint="see the skipped clips above")
    return report


def dataset_report(data: list[EffectData], encoded: EncodeReport) -> dict[str, Any]:
    """What training will use, and what it skipped and why (never drop data silently)."""
    return {
        "effects": {d.effect: {"train_clips": len(d.train), "val_clips": len(d.val), "notes": d.notes} for d in data},
        "skipped": [{"clip": c, "reason": r} for c, r in encoded.skipped],
    }


def print_dataset_report(report: dict[str, Any]) -> None:
    for effect, info in report["effects"].items():
        notes = f" ({'; '.join(info['notes'])})" if info["notes"] else ""
        console.info(f"dataset {effect}: {info['train_clips']} training clips, {info['val_clips']} validation clips{notes}")
    for item in report["skipped"]:
        console.warn(f"skipped clip {item['clip']}: {item['reason']}")


def effect_set(reg: Registry, base: Record, d: EffectData, init: LoraFile | None) -> EffectSet:
    latents, text = load_encoded(reg, base, d.train)
    val_latents, val_text = load_encoded(reg, base, d.val)
    factors = {n: (l.A.float(), l.B.float()) for n, l in init.layers.items()} if init else None
    alpha = None
    if init is not None:
        alphas = {l.alpha for l in init.layers.values()}
        if len(alphas) != 1:
            raise P2EError("--init LoRA has per-layer alphas; canonicalize it first (p2e canon)")
        alpha = alphas.pop()
    return EffectSet(d.effect, latents, text, val_latents, val_text, factors, alpha)


def check_init(init: LoraFile, names: list[str], cfg: LoraRecipe) -> None:
    missing = [n for n in names if n not in init.layers]
    ranks = init.ranks
    if missing or ranks != [cfg.rank]:
        raise P2EError(f"--init LoRA does not fit the recipe: rank {ranks} vs {cfg.rank}"
                       + (f", missing {len(missing)} layers such as {missing[0]}" if missing else ""),
                       hint="use --set rank=R to match it, and a LoRA for the same base")


def previewer(reg: Registry, base: Record, pipe, run: Record, group: list[EffectData]):
    """A train_group preview hook: every effect's first validation clip (a held-out photo) rendered
    from its first frame with the LoRA as trained so far, under the ground truth, as a PNG contact
    sheet stored on the run (data["previews"]: effect -> the latest sheet's file role)."""
    from .render import Renderer, RenderParams
    from .video import contact_sheet, write_image

    renderer = Renderer(base, pipe=pipe)
    truths = [curate.load_clip(reg, d.val[0]) for d in group]

    def preview(step: int, layers) -> None:
        from . import adapters

        rows, labels = [], []
        for i, (d, truth) in enumerate(zip(group, truths)):
            with adapters.routed(layers, torch.full((1,), i)):
                clip = renderer.render(truth[0], [], RenderParams(prompt=d.prompt, seed=0, frames=len(truth)))
            rows += [truth, clip]
            labels += [f"{d.effect} truth", f"{d.effect} step {step}"]
        with reg.artifact(".png") as sheet:
            write_image(contact_sheet(rows, labels), sheet.path)
        role = f"preview-{step}"
        current = reg.get(run.id)
        previews = {**current.data.get("previews", {}), **{d.effect: role for d in group}}
        reg.update(run.id, data={"previews": previews}, files={role: sheet.ref})
        console.info(f"preview at step {step}: {reg.path(sheet.ref)}")

    return preview


def register_trained(reg: Registry, base: Record, run: Record, d: EffectData, result: GroupResult, index: int,
                     cfg: LoraRecipe, subkind: str, parents: list[str], name: str | None, out: Path | None) -> Record:
    layers = {n: LoraLayer(a, b, cfg.alpha) for n, (a, b) in result.factors[index].items()}
    lineage = [run.id, *parents, *[c.id for c in d.train]]
    with reg.artifact(".safetensors") as artifact:
        write_lora(artifact.path, layers, kind=subkind, base=base, prompt=d.prompt, parents=lineage,
                   title=f"{d.effect} ({subkind})")
    losses = {"base": result.base_loss[index], "lora": result.final_loss(index)}
    data = LoraData.on(base, cfg.rank, cfg.alpha, effect=d.effect, prompt=d.prompt, val_loss=losses, run=run.id,
                       history=[h for h in result.history if h["effect"] == index])
    record = register_lora(reg, data, artifact.ref, subkind=subkind, name=name, parents=lineage)
    if out is not None:
        write_lora(out, layers, kind=subkind, base=base, prompt=d.prompt, parents=[record.id, *lineage],
                   title=f"{d.effect} ({subkind})")
    return record


def flow_shift(settings: dict[str, Any], pipe) -> float:
    """The base's flow-matching timestep shift (its settings, else its scheduler's)."""
    return float(settings.get("flow_shift") or pipe.scheduler.config.get("flow_shift", 3.0))


def train_loras(effects: list[str], cfg: LoraRecipe, *, name: str | None = None, out: Path | None = None,
                init: LoraFile | None = None, resume: str | None = None, subkind: str = "reference",
                parents: list[str] = (), skip_trained: bool = False) -> list[Record]:
    """Train one LoRA per effect (batched in groups of cfg.group_size) and register them."""
    from .recipes import to_dict
    from .registry import open_registry

    from .training import distributed_state

    state = distributed_state()  # under `accelerate launch`, the main process alone writes
    if not state.is_main_process:
        console.mode.quiet = True
    reg = open_registry()
    if resume is not None:
        run = reg.get(resume, "run")
        if run.data.get("status") == "done":
            raise P2EError(f"run {run.id} already finished", hint="start a new run instead of --resume")
        cfg = _recipe_from(run.data["recipe"])
        effects = run.data["effects"]
    base = resolve_base(cfg.base)
    if skip_trained:
        trained = {r.data.get("effect") for r in reg.ls("lora", "reference") if is_on(r, base)}
        skipped = [e for e in effects if e in trained]
        if skipped:
            console.info(f"skipping {len(skipped)} effect(s) that already have a reference LoRA on {base.name}")
        effects = [e for e in effects if e not in trained]
    if not effects:
        return []
    if (name or out) and len(effects) > 1:
        raise P2EError("--name and -o name a single LoRA; they cannot be used with several effects")
    settings = base_settings(base)
    pipe = load_pipeline(base)
    names = [layer.name for layer in layer_table(pipe.transformer, cfg.targets)]
    if init is not None:
        check_init(init, names, cfg)
    with state.main_process_first():  # the main process synthesises and encodes; the others read
        data = [gather(reg, effect, cfg, settings) for effect in effects]
        encoded = encode_all(reg, base, pipe, data)
    report = dataset_report(data, encoded)
    print_dataset_report(report)
    if resume is None:
        run = None
        if state.is_main_process:
            run = reg.add("run", data={"task": f"train lora ({subkind})", "recipe": to_dict(cfg), "effects": effects,
                                       "base": base.id, "status": "running", "dataset": report, "done": {},
                                       "processes": state.num_processes}, parents=[base.id, *parents])
            console.info(f"run {run.id}: {len(effects)} LoRA(s) on base {base.name or base.id} "
                         f"(resume with --resume {run.id})")
    shift = flow_shift(settings, pipe)
    done_before = run.data.get("done", {}) if run is not None else {}
    records = [reg.get(i) for i in done_before.values()]
    todo = [d for d in data if d.effect not in done_before]
    for start in range(0, len(todo), cfg.group_size):
        group = todo[start:start + cfg.group_size]
        labels = [d.effect for d in group]
        sets = [effect_set(reg, base, d, init) for d in group]
        result = train_group(
            pipe.transformer, names, sets, cfg, shift=shift,
            resume=load_checkpoint(reg, reg.get(run.id), labels) if run is not None else None,
            checkpoint=lambda t, o, m, labels=labels: save_checkpoint(reg, run, labels, t, o, m),
            preview=previewer(reg, base, pipe, run, group) if cfg.preview_every and state.is_main_process else None,
            description=f"train {', '.join(labels)[:40]}")
        if not state.is_main_process:
            continue
        for i, d in enumerate(group):
            record = register_trained(reg, base, run, d, result, i, cfg, subkind, list(parents), name, out)
            records.append(record)
            done = {**reg.get(run.id).data.get("done", {}), d.effect: record.id}
            reg.update(run.id, data={"done": done})
            loss = record.data["val_loss"]
            console.info(f"{d.effect}: validation loss {loss['base']:.4f} (base) -> {loss['lora']:.4f} (LoRA), "
                         f"lora {record.id}")
    if state.is_main_process:
        reg.update(run.id, data={"status": "done", "checkpoint": None})
    state.wait_for_everyone()
    return records


def lora_validation_loss(effect: str, lora: LoraFile, cfg: LoraRecipe) -> float:
    """An existing LoRA's validation loss on `effect`'s validation clips for cfg.base, measured as
    `train_loras` measures the LoRAs it trains (same clips, draws and loss). For LoRAs that record
    none, such as imported references."""
    import dataclasses

    from . import adapters
    from .lora_training import evaluate
    from .registry import open_registry

    reg = open_registry()
    base = resolve_base(cfg.base)
    settings = base_settings(base)
    pipe = load_pipeline(base)
    names = [layer.name for layer in layer_table(pipe.transformer, cfg.targets)]
    cfg = dataclasses.replace(cfg, rank=lora.rank)
    check_init(lora, names, cfg)
    d = gather(reg, effect, cfg, settings)
    encode_all(reg, base, pipe, [d])
    s = effect_set(reg, base, d, lora)
    layers = adapters.inject(pipe.transformer, names, [0], lora.rank, s.init_alpha)
    adapters.load_factors(layers, 0, s.init, s.init_alpha)
    return evaluate(pipe.transformer, layers, [s], weight=1.0)[0]


def finetune_lora(reg: Registry, source, effect: str | None, *, clips: Path | None = None, recipe: str = "lora",
                  overrides: list[str] = (), name: str | None = None, out: Path | None = None) -> dict[str, Any]:
    """`p2e finetune`: train a LoRA of kind finetuned starting from `source` (a render.ResolvedLora; its
    rank and alpha become the recipe's). The effect: `effect`, else `clips`' folder name (the clips are
    ingested first), else the one the init's prompt names (catalog.infer_effect, said before training).
    Returns the result, with the effect's reference loss on the same clips and the first validation step
    that reached it."""
    from .catalog import effect_references, infer_effect
    from .lora_io import read_lora
    from .recipes import load_recipe

    lora = source.lora
    alphas = {layer.alpha for layer in lora.layers.values()}
    if len(lora.ranks) != 1 or len(alphas) != 1:
        raise P2EError(f"--init {source.spec.source} has mixed ranks or alphas ({lora.ranks}, {sorted(alphas)})",
                       hint="canonicalize it first: p2e canon FILE")
    inferred = None
    if effect is None and clips is not None:
        effect = clips.resolve().name
    elif effect is None:
        prompt = lora.p2e("prompt") or (source.record.data.get("prompt") if source.record is not None else None)
        if not prompt:
            raise P2EError(f"--init {source.spec.source} records no prompt to infer its effect from",
                           hint="name the EFFECT to fine-tune on, or give --clips DIR")
        effect, why = infer_effect(reg, prompt)
        if effect is None:
            raise P2EError(f"cannot tell which effect --init {source.spec.source} is: {why}",
                           hint="name the EFFECT to fine-tune on (p2e effects ls), or give --clips DIR")
        inferred = why
        console.info(f"fine-tuning on effect {effect}: {why} (name the EFFECT to choose another)")
    if clips is not None:
        report = curate.add_clips(reg, clips, effect)
        console.info(f"ingested {len(report.added)} clip(s) from {clips}; skipped {len(report.skipped)}")
    cfg = load_recipe(recipe, [f"rank={lora.rank}", f"alpha={alphas.pop()}", *overrides], kind="lora")
    parents = [source.record.id] if source.record is not None else _registered_parents(reg, lora)
    [record] = train_loras([effect], cfg, name=name, out=out, init=lora, subkind="finetuned", parents=parents)
    history = record.data["history"]
    reference, target, reached = effect_references(reg, reg.get(record.data["base"]), [effect]).get(effect), None, None
    if reference is not None:
        target = (reference.data.get("val_loss") or {}).get("lora")
        if target is None:  # an imported reference records no loss: measure it on the same clips
            target = lora_validation_loss(effect, read_lora(reg.path(reference.files["lora"])), cfg)
        reached = next((h["step"] for h in history if h["val"] <= target), None)
    return {"id": record.id, "effect": effect, "effect_inferred": inferred, "val_loss": record.data["val_loss"],
            "history": history, "reference": reference.id if reference else None, "reference_loss": target,
            "reached_reference_at": reached}


def _registered_parents(reg: Registry, lora: LoraFile) -> list[str]:
    """The registry LoRAs a file names as its parents (p2e writes them), so lineage survives -o files.
    Parents this registry does not hold are named in a warning, not dropped silently."""
    import json

    try:
        named = json.loads(lora.p2e("parents") or "[]")
    except ValueError:
        return []
    found, missing = [], []
    for ref in named if isinstance(named, list) else []:
        try:
            found.append(reg.get(str(ref), "lora").id)
        except P2EError:
            missing.append(str(ref))
    if missing:
        console.warn(f"--init names parent LoRA(s) not in this registry: {', '.join(missing)}; "
                     "the fine-tune's lineage leaves them out")
    return found


def _recipe_from(raw: dict[str, Any]) -> LoraRecipe:
    from .recipes import parse_recipe

    return parse_recipe(raw, origin="the run's recipe")
