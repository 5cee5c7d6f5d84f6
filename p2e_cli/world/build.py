"""Build an embedded Wan world from a recipe: VAE -> latent statistics -> encoded corpus ->
transformer -> (optionally) more decoder training behind the frozen encoder -> a real
diffusers directory that WanImageToVideoPipeline.from_pretrained loads.

Stages run in order and each leaves its product in `OUT/.build/`, so an interrupted build
resumes where it stopped (`--resume`). Training data is drawn from a per-step seed and the
learning rate is a function of the step, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from .. import console
from ..errors import P2EError
from ..files import atomic_write
from ..hypernet.text import minilm_dir
from ..schemas import WorldRecipe
from ..training import (cosine_lr, distributed_state, flow_matching_loss, make_accelerator, shifted_sigmas,
                        stop_at_step_boundary)
from .captions import caption_embeddings, encode_prompts, read_caption_file
from .change import corpus_clips
from .corpus import ALL_CAPTIONS, captions, photo_bank
from .position import position_loss

MODEL_INDEX = {
    "_class_name": "WanImageToVideoPipeline",
    "boundary_ratio": None,
    "expand_timesteps": True,
    "image_encoder": [None, None],
    "image_processor": [None, None],
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "BertModel"],
    "tokenizer": ["transformers", "BertTokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "transformer_2": [None, None],
    "vae": ["diffusers", "AutoencoderKLWan"],
}
TEXT_DIM = 384  # all-MiniLM-L6-v2 hidden size
CHUNK = 16  # corpus clips drawn (and encoded) at a time


def step_generator(seed: int, stage: str, step: int) -> torch.Generator:
    """The data RNG of one training step: a pure function of (seed, stage, step) for exact resume."""
    salt = sum(ord(c) * 31 ** i for i, c in enumerate(stage)) % 1_000_003
    return torch.Generator().manual_seed((seed * 1_000_003 + salt) * 10_000_019 + step)


def make_vae(recipe: WorldRecipe, decoder_base_dim: int | None = None):
    """The recipe's AutoencoderKLWan; decoder_base_dim widens its decoder (the decoder stage)."""
    from diffusers import AutoencoderKLWan

    from ..wan import fast_vae_norms

    v = recipe.vae
    downsamples = len(v.dim_mult) - 1
    if v.position_channels >= v.z_dim:
        raise P2EError(f"vae.position_channels ({v.position_channels}) must leave content channels in vae.z_dim "
                       f"({v.z_dim})", hint="raise vae.z_dim or lower vae.position_channels")
    if len(v.temporal_downsample) != downsamples:
        raise P2EError(f"vae.temporal_downsample needs {downsamples} entries (one per down stage), "
                       f"got {len(v.temporal_downsample)}")
    return fast_vae_norms(AutoencoderKLWan(
        base_dim=v.base_dim, decoder_base_dim=decoder_base_dim, z_dim=v.z_dim, dim_mult=v.dim_mult,
        num_res_blocks=v.num_res_blocks, temperal_downsample=v.temporal_downsample, is_residual=v.residual,
        latents_mean=[0.0] * v.z_dim, latents_std=[1.0] * v.z_dim, scale_factor_spatial=2 ** downsamples,
        scale_factor_temporal=2 ** sum(v.temporal_downsample)))


def make_transformer(recipe: WorldRecipe):
    from diffusers import WanTransformer3DModel

    t = recipe.transformer
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=t.num_attention_heads, attention_head_dim=t.attention_head_dim,
        in_channels=recipe.vae.z_dim, out_channels=recipe.vae.z_dim, text_dim=TEXT_DIM, freq_dim=256,
        ffn_dim=t.ffn_dim, num_layers=t.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        image_dim=None, rope_max_seq_len=1024)
    return wan_init(model) if t.init == "wan" else model


def wan_init(model):
    """The original Wan repo's initialisation (WanModel.init_weights): xavier-uniform weights and zero biases
    for every linear layer, a xavier-uniform patch embedding, N(0, 0.02) for the text and time embedders, and a
    zero output head, so that training starts from predicting v = 0 (diffusers builds with PyTorch's defaults,
    since it only loads pretrained weights)."""
    import torch.nn as nn

    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.xavier_uniform_(model.patch_embedding.weight.flatten(1))
    embedder = model.condition_embedder
    for module in (*embedder.text_embedder.modules(), *embedder.time_embedder.modules()):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
    nn.init.zeros_(model.proj_out.weight)
    nn.init.zeros_(model.proj_out.bias)
    return model


def make_scheduler(recipe: WorldRecipe):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                   num_train_timesteps=1000, flow_shift=recipe.render.flow_shift)


def write_caption_file(recipe: WorldRecipe, out: Path) -> list[str]:
    """The embeddings of every caption a build of `recipe` trains on, and of the empty prompt, for a build
    on a machine without the MiniLM package (`p2e world build --captions`). Returns the captions."""
    from safetensors.torch import save_file

    table = caption_table(recipe, photo_bank("train", size=2 * recipe.size)) + [""]
    text = encode_prompts(table, recipe.max_sequence_length)
    with atomic_write(out) as tmp:
        save_file({"text": text.contiguous()}, str(tmp), metadata={"captions": json.dumps(table)})
    return table


class Checkpoints:
    """Model weights as safetensors and optimizer state via torch.save (loaded weights_only), on the CPU: a build
    started on a GPU resumes anywhere."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, step: int) -> None:
        from safetensors.torch import save_file

        with atomic_write(self.folder / f"{name}.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        if optimizer is not None:
            with atomic_write(self.folder / f"{name}.opt.pt") as tmp:
                torch.save(optimizer.state_dict(), tmp)
        with atomic_write(self.folder / f"{name}.json") as tmp:
            tmp.write_text(json.dumps({"step": step}))

    def load(self, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Restore a checkpoint if there is one; return its step (0 if none)."""
        from safetensors.torch import load_file

        meta = self.folder / f"{name}.json"
        if not meta.exists():
            return 0
        model.load_state_dict(load_file(str(self.folder / f"{name}.safetensors")))
        if optimizer is not None and (self.folder / f"{name}.opt.pt").exists():
            optimizer.load_state_dict(torch.load(self.folder / f"{name}.opt.pt", weights_only=True, map_location="cpu"))
        return json.loads(meta.read_text())["step"]

    def done(self, name: str) -> bool:
        return (self.folder / f"{name}.json").exists()


@dataclass
class StepLoss:
    """A stage's loss in two halves: `data(step)` draws the step's batch on the CPU, a pure function of the step
    (so worker processes can draw ahead of the GPU), and `loss(batch)` computes the loss on the model's device."""

    data: Callable[[int], Any]
    loss: Callable[[Any], torch.Tensor]

    def __call__(self, step: int) -> torch.Tensor:
        return self.loss(self.data(step))


class _Draws(torch.utils.data.Dataset):
    def __init__(self, data: Callable[[int], Any], start: int, stop: int):
        self.data, self.start, self.stop = data, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> Any:
        return self.data(self.start + i)


def _worker_init(_: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process at a step boundary, not a draw
    torch.set_num_threads(1)


def drawn(data: Callable[[int], Any], start: int, stop: int, workers: int = 0) -> Iterator[Any]:
    """data(start), ..., data(stop - 1) in order: drawn here, or ahead of time by `workers` forked processes
    (the same values either way: each draw is a function of its index)."""
    if workers <= 0 or stop <= start:
        yield from (data(i) for i in range(start, stop))
        return
    yield from torch.utils.data.DataLoader(_Draws(data, start, stop), batch_size=None, num_workers=workers,
                                           prefetch_factor=4, multiprocessing_context="fork",
                                           worker_init_fn=_worker_init,
                                           generator=torch.Generator())  # not a draw from the global RNG


def data_workers(requested: int | None) -> int:
    """Draw processes for the codec stages and the corpus: `requested`, else several beside a GPU, none on a CPU
    (there the draws would take cores from the training itself)."""
    if requested is not None:
        return max(0, requested)
    return min(8, (os.cpu_count() or 2) - 1) if distributed_state().device.type == "cuda" else 0


def train(name: str, model: torch.nn.Module, loss_at: Callable[[int], torch.Tensor], *, steps: int, lr: float,
          warmup: int, checkpoints: Checkpoints, every: int, workers: int = 0) -> list[tuple[int, float]]:
    """The training loop of every stage: AdamW on the trainable parameters, cosine lr, grad clip 1.0,
    checkpoints every `every` steps and on Ctrl-C. Returns the (step, loss) log of this run. A StepLoss's
    batches are drawn by `workers` processes ahead of the training."""
    accelerator = make_accelerator()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    start = checkpoints.load(f"{name}.ckpt", model, optimizer)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    log, smooth = [], None
    with console.progress(f"train {name}", total=steps) as advance, stop_at_step_boundary() as stop_requested:
        advance(start)
        batches = drawn(loss_at.data, start, steps, workers) if isinstance(loss_at, StepLoss) else None
        for step in range(start, steps):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, steps, lr, warmup)
            loss = loss_at.loss(next(batches)) if batches is not None else loss_at(step)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = loss.item()
            smooth = value if smooth is None else 0.98 * smooth + 0.02 * value
            log.append((step, value))
            advance(loss=smooth)
            if step % 25 == 0:
                with open(checkpoints.folder / f"{name}.log.jsonl", "a") as f:
                    f.write(json.dumps({"step": step, "loss": value, "smooth": smooth,
                                        "lr": optimizer.param_groups[0]["lr"]}) + "\n")
            if stop_requested():
                checkpoints.save(f"{name}.ckpt", accelerator.unwrap_model(model), optimizer, step + 1)
                console.info(f"interrupted: saved {name} at step {step + 1}; continue with --resume")
                raise KeyboardInterrupt
            if (step + 1) % every == 0 or step + 1 == steps:
                checkpoints.save(f"{name}.ckpt", accelerator.unwrap_model(model), optimizer, step + 1)
    return log


def codec_banks(recipe: WorldRecipe, bank: torch.Tensor) -> list[torch.Tensor]:
    """The photo banks the codec stages (VAE, decoder) draw views from: `bank` (the train photos at
    twice the world's size) and the same photos at four times it."""
    return [bank, photo_bank("train", size=4 * recipe.size)]


def vae_loss_fn(vae, recipe: WorldRecipe, banks: list[torch.Tensor], stage: str = "vae",
                batch_size: int | None = None) -> StepLoss:
    """L1 + MSE reconstruction of the corpus's clips (and single images every `image_every` steps).
    A codec needs no notion of up or of scale, so views come from photo banks of several
    resolutions and are rotated/flipped at random: more variety from 20 photos, less overfitting.
    The decoder stage uses it too (its own data draws, batch size; the frozen encoder gets no grad).
    With vae.position_channels, the VAE stage also trains the encoder to write the position grid there."""
    v = recipe.vae
    position = v.position_channels if stage == "vae" else 0

    def data(step: int) -> torch.Tensor:
        g = step_generator(recipe.seed, stage, step)
        frames = 1 if step % v.image_every == 0 else v.clip_frames
        batch = (batch_size or v.batch_size) * (4 if frames == 1 else 1)
        clips, _ = corpus_clips(recipe.corpus, banks[step % len(banks)], batch, frames, recipe.size, g)
        turns, vflip = torch.randint(4, (1,), generator=g).item(), torch.rand(1, generator=g).item() < 0.5
        clips = clips.rot90(turns, dims=(-2, -1))
        clips = clips.flip(-2) if vflip else clips
        if step % v.full_size_every != 0 and v.crop < recipe.size:
            y, x = torch.randint(recipe.size - v.crop + 1, (2,), generator=g).tolist()
            clips = clips[..., y:y + v.crop, x:x + v.crop]
        return clips.contiguous()

    def loss(clips: torch.Tensor) -> torch.Tensor:
        clips = clips.to(vae.device)
        mean = vae.encode(clips).latent_dist.mode()
        recon = vae.decode(mean).sample
        total = F.l1_loss(recon, clips) + F.mse_loss(recon, clips)
        if position:
            total = total + v.position_weight * position_loss(mean, position)
        if v.first_frame_weight and clips.shape[2] > 1:
            # the first frame is encoded alone and conditions every I2V render: weigh it up
            first, target = recon[:, :, :1], clips[:, :, :1]
            total = total + v.first_frame_weight * (F.l1_loss(first, target) + F.mse_loss(first, target))
        return total

    return StepLoss(data, loss)


@torch.no_grad()
def latent_statistics(vae, recipe: WorldRecipe, bank: torch.Tensor, n: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the VAE's latents on the corpus's clips (the pipeline normalises by them)."""
    clips, _ = corpus_clips(recipe.corpus, bank, n, recipe.frames, recipe.size, step_generator(recipe.seed, "stats", 0))
    latents = torch.cat([vae.encode(clips[i:i + 8].to(vae.device)).latent_dist.mode().cpu() for i in range(0, n, 8)])
    dims = (0, 2, 3, 4)
    return latents.mean(dims).tolist(), latents.std(dims).clamp_min(1e-4).tolist()


def corpus_chunk(recipe: WorldRecipe, bank: torch.Tensor, start: int) -> tuple[torch.Tensor, list[str]]:
    """Clips start..start + CHUNK of the transformer's corpus, as drawn: (clips, their captions) -- generic ones, or
    with transformer.captions: coded, each changed clip's motion code."""
    g = step_generator(recipe.seed, "corpus", start)
    count = min(CHUNK, recipe.transformer.corpus_clips - start)
    codes: list[str] = []
    clips, changed = corpus_clips(recipe.corpus, bank, count, recipe.frames, recipe.size, g, codes)
    texts = captions(count, g, changed)
    if recipe.transformer.captions == "coded":
        texts = [code or text for code, text in zip(codes, texts)]
    return clips, texts


def corpus_chunks(recipe: WorldRecipe, bank: torch.Tensor, workers: int = 0) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """The whole corpus, chunk by chunk (drawn ahead by `workers` processes)."""
    chunks = -(-recipe.transformer.corpus_clips // CHUNK)
    return drawn(lambda i: corpus_chunk(recipe, bank, i * CHUNK), 0, chunks, workers)


def caption_table(recipe: WorldRecipe, bank: torch.Tensor, workers: int = 0) -> list[str]:
    """Every caption the corpus uses, in encode_corpus's order: ALL_CAPTIONS, then the motion codes drawn."""
    table = list(ALL_CAPTIONS)
    if recipe.transformer.captions == "coded":  # generic captions are all in ALL_CAPTIONS: nothing to draw
        with console.progress("draw corpus captions", total=recipe.transformer.corpus_clips) as advance:
            for clips, texts in corpus_chunks(recipe, bank, workers):
                table += [t for t in dict.fromkeys(texts) if t not in table]
                advance(len(clips))
    return table


@torch.no_grad()
def encode_corpus(vae, recipe: WorldRecipe, bank: torch.Tensor,
                  workers: int = 0) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The transformer's training set: the corpus's clips as normalised latents + caption indices
    into the returned caption list (caption_table's)."""
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    table = list(ALL_CAPTIONS)
    latents, caption_ids = [], []
    with console.progress("encode corpus", total=recipe.transformer.corpus_clips) as advance:
        for clips, texts in corpus_chunks(recipe, bank, workers):
            latents.append(((vae.encode(clips.to(vae.device)).latent_dist.mode().cpu() - mean) / std).half())
            table += [t for t in dict.fromkeys(texts) if t not in table]
            caption_ids.append(torch.tensor([table.index(c) for c in texts]))
            advance(len(clips))
    return {"latents": torch.cat(latents), "captions": torch.cat(caption_ids)}, table


def transformer_loss_fn(transformer, recipe: WorldRecipe, corpus: dict[str, torch.Tensor],
                        text_table: torch.Tensor) -> Callable[[int], torch.Tensor]:
    """text_table rows: the captions (ALL_CAPTIONS), then the empty prompt (caption dropout, for guidance)."""
    t = recipe.transformer
    empty = len(text_table) - 1

    def loss_at(step: int) -> torch.Tensor:
        g = step_generator(recipe.seed, "transformer", step)
        idx = torch.randint(len(corpus["latents"]), (t.batch_size,), generator=g)
        latents = corpus["latents"][idx].float()
        caption = corpus["captions"][idx]
        caption = torch.where(torch.rand(t.batch_size, generator=g) < t.caption_dropout, empty, caption)
        sigmas = shifted_sigmas(torch.rand(t.batch_size, generator=g), recipe.render.flow_shift)
        noise = torch.randn(latents.shape, generator=g)
        return flow_matching_loss(transformer, latents, text_table[caption], sigmas, noise).mean()

    return loss_at


def base_settings(recipe: WorldRecipe) -> dict[str, Any]:
    return {"max_sequence_length": recipe.max_sequence_length, "frames": recipe.frames,
            "size": [recipe.size, recipe.size], "steps": recipe.render.steps, "guidance": recipe.render.guidance,
            "fps": recipe.render.fps, "flow_shift": recipe.render.flow_shift, "world": recipe.name,
            "position_channels": recipe.vae.position_channels}


def export(out: Path, recipe: WorldRecipe, vae, transformer, text_dir: Path | None = None) -> Path:
    """Write the diffusers directory: fp16 vae/transformer, scheduler, model_index.json,
    p2e_base.json; text_encoder/tokenizer link to the installed MiniLM (not copied: 90 MB) where it is installed."""
    from ..wan import quiet_libraries

    with quiet_libraries():  # diffusers warns about fp16 casts of norm layers; fp16 is the shipping format
        for name, model in (("vae", vae), ("transformer", transformer)):
            model.to(torch.float16).save_pretrained(out / name, safe_serialization=True)
            model.to(torch.float32)
    make_scheduler(recipe).save_pretrained(out / "scheduler")
    link_text_encoder(out, text_dir)
    import diffusers

    (out / "model_index.json").write_text(json.dumps({**MODEL_INDEX, "_diffusers_version": diffusers.__version__}, indent=2))
    (out / "p2e_base.json").write_text(json.dumps(base_settings(recipe), indent=2))
    (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    return out


def built_world(path: Path) -> bool:
    """Whether a folder is a world `p2e world build` wrote (its p2e_base.json names the world's recipe)."""
    try:
        return "world" in json.loads((path / "p2e_base.json").read_text())
    except (OSError, ValueError):
        return False


def link_text_encoder(out: Path, text_dir: Path | None = None) -> bool:
    """Link text_encoder/ and tokenizer/ to MiniLM; False where its package is not installed (a build with
    --captions on another machine: `p2e base add` links them where it is)."""
    try:
        target = text_dir or minilm_dir()
    except ImportError:
        return False
    for name in ("text_encoder", "tokenizer"):
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link, target_is_directory=True)
    return True


def recipe_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths whose values differ between two recipe dicts."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += recipe_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


# What may still change on --resume: a stage's own settings, until that stage starts (the
# products of the stages before it are finished by then). The corpus (its size, its captions) until it is encoded.
OPEN_UNTIL = {"transformer": ("transformer.", "render.", "checkpoint_every"), "decoder": ("decoder.",)}
CORPUS_KEYS = ("transformer.corpus_clips", "transformer.captions")


def check_resumable(old: dict[str, Any], new: dict[str, Any], checkpoints: Checkpoints, out: Path) -> None:
    from ..recipes import parse_recipe, to_dict

    old = to_dict(parse_recipe(old))  # a build started before a key existed ran at its default

    def is_open(key: str) -> bool:
        if key in CORPUS_KEYS:
            return not (checkpoints.folder / "corpus.safetensors").exists()
        return any(key.startswith(prefixes) and not (checkpoints.done(f"{stage}.ckpt") or checkpoints.done(stage))
                   for stage, prefixes in OPEN_UNTIL.items())

    fixed = [k for k in recipe_changes(old, new) if not is_open(k)]
    if fixed:
        raise P2EError(f"the recipe differs from the one {out} was started with in {', '.join(fixed)}",
                       hint="resume with the same recipe (a stage's own settings -- transformer.*, render.*, "
                            "decoder.* -- may change until it starts), or build into a new -o")


def build_world(recipe: WorldRecipe, out: Path, resume: bool = False, captions_file: Path | None = None,
                workers: int | None = None) -> Path:
    """Run (or resume) every stage of the build and return the finished diffusers directory. Training runs on
    the GPU when there is one; `captions_file` (p2e world captions) stands in for the MiniLM package; `workers`
    processes draw the codec stages' and the corpus's clips (data_workers). None of these change the result."""
    from safetensors.torch import load_file, save_file

    work = out / ".build"
    recipe_file = work / "recipe.json"
    if out.exists() and any(out.iterdir()) and not resume:
        raise P2EError(f"{out} already exists and is not empty",
                       hint="pass --resume to continue its build, or choose another -o")
    captions = (captions_file, *read_caption_file(captions_file, recipe)) if captions_file is not None else None
    checkpoints = Checkpoints(work)
    if resume and recipe_file.exists():
        check_resumable(json.loads(recipe_file.read_text()), asdict(recipe), checkpoints, out)
    recipe_file.write_text(json.dumps(asdict(recipe), indent=2))
    torch.manual_seed(recipe.seed)
    bank = photo_bank("train", size=2 * recipe.size)
    workers = data_workers(workers)

    vae = make_vae(recipe)
    if not checkpoints.done("vae"):
        train("vae", vae, vae_loss_fn(vae, recipe, codec_banks(recipe, bank)), steps=recipe.vae.steps, lr=recipe.vae.lr,
              warmup=recipe.vae.warmup_steps, checkpoints=checkpoints, every=recipe.checkpoint_every, workers=workers)
        vae.eval()
        mean, std = latent_statistics(vae, recipe, bank)
        vae.register_to_config(latents_mean=mean, latents_std=std)
        (work / "vae_config.json").write_text(json.dumps({"latents_mean": mean, "latents_std": std}))
        checkpoints.save("vae", vae, None, recipe.vae.steps)
    else:
        checkpoints.load("vae", vae)
        vae.register_to_config(**json.loads((work / "vae_config.json").read_text()))
    vae.to(distributed_state().device).eval().requires_grad_(False)  # where train() put it, also when loaded

    transformer = make_transformer(recipe)
    if not checkpoints.done("transformer"):
        corpus_file = work / "corpus.safetensors"
        if not corpus_file.exists():
            corpus, table = encode_corpus(vae, recipe, bank, workers)
            corpus["text"] = caption_embeddings(table + [""], recipe, captions)
            with atomic_write(corpus_file) as tmp:
                save_file(corpus, str(tmp), metadata={"captions": json.dumps(table)})
        corpus = load_file(str(corpus_file))
        train("transformer", transformer, transformer_loss_fn(transformer, recipe, corpus, corpus["text"]),
              steps=recipe.transformer.steps, lr=recipe.transformer.lr, warmup=recipe.transformer.warmup_steps,
              checkpoints=checkpoints, every=recipe.checkpoint_every)
        checkpoints.save("transformer", transformer, None, recipe.transformer.steps)
    else:
        checkpoints.load("transformer", transformer)
    if recipe.decoder.base_dim:
        vae = train_decoder(vae, recipe, codec_banks(recipe, bank), checkpoints, workers)
    return export(out, recipe, vae, transformer.eval())


def train_decoder(narrow, recipe: WorldRecipe, banks: list[torch.Tensor], checkpoints: Checkpoints, workers: int = 0):
    """The decoder stage: the finished VAE's encoder (and latent statistics) stay frozen and
    unchanged; its decoder trains on (decoder.base_dim = vae.base_dim) or a new decoder of width
    decoder.base_dim is trained from scratch in its place."""
    d = recipe.decoder
    torch.manual_seed(recipe.seed)
    vae = make_vae(recipe, decoder_base_dim=d.base_dim)
    vae.register_to_config(latents_mean=narrow.config.latents_mean, latents_std=narrow.config.latents_std)
    same_width = d.base_dim == recipe.vae.base_dim
    vae.load_state_dict({k: v for k, v in narrow.state_dict().items()
                         if same_width or k.startswith(("encoder.", "quant_conv."))}, strict=False)
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    if not checkpoints.done("decoder"):
        train("decoder", vae, vae_loss_fn(vae, recipe, banks, stage="decoder", batch_size=d.batch_size),
              steps=d.steps, lr=d.lr, warmup=d.warmup_steps, checkpoints=checkpoints, every=recipe.checkpoint_every,
              workers=workers)
        checkpoints.save("decoder", vae, None, d.steps)
    else:
        checkpoints.load("decoder", vae)
    return vae.eval().requires_grad_(False)
