"""The Wan I2V flow-matching objective, shared by the world build, LoRA training and evaluation.

Wan pipelines sample with flow matching: x_σ = (1-σ)·x0 + σ·ε, the transformer predicts the
velocity v = ε - x0 at timestep 1000·σ. For image-to-video the first latent frame is the VAE
latent of the input image. Two conditionings exist in diffusers' WanImageToVideoPipeline:
- `expand_timesteps` (Wan2.2 TI2V style, used by the embedded worlds): the first latent frame is
  given clean, its tokens get timestep 0, and the loss skips it;
- channel concat (Wan2.1 / Wan2.2 A14B): [x_σ, mask, condition latent] along channels.
This module mirrors the pipeline exactly so a loss measured here is the loss of what renders.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch


@contextmanager
def stop_at_step_boundary() -> Iterator[Callable[[], bool]]:
    """Defer Ctrl-C / SIGTERM until the current training step ends: yields `stop_requested()`; the
    loop checks it after each step, saves a consistent checkpoint and raises KeyboardInterrupt.
    A second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    hits = []

    def handler(signum, frame):
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(hits)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """σ = shift·u / (1 + (shift-1)·u): uniform u mapped like the sampler's flow_shift schedule."""
    return shift * u / (1 + (shift - 1) * u)


def cosine_lr(step: int, total: int, base: float, warmup: int = 0, floor: float = 0.05) -> float:
    """Linear warm-up then cosine decay to floor·base; a pure function of the step (exact resume)."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def distributed_state():
    """accelerate's process state: one process normally; several under `accelerate launch`
    (torchrun env). Without CUDA the processes talk over gloo on the CPU."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(mixed_precision: str = "no"):
    """An Accelerator on distributed_state()'s device choice (the training loops' one way in);
    mixed_precision "bf16"/"fp16" runs forward passes under autocast (accelerator.autocast()).
    accelerate keeps one global state per process; a later run in the same process with another
    precision (eval ablations, tests) resets it, keeping the process group."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state()

    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision)


def shard_fsdp(model: torch.nn.Module, units: Iterable[torch.nn.Module]) -> torch.nn.Module:
    """Shard `model` over the `accelerate launch` processes with FSDP2 (torch's fully_shard): each
    of `units` gathers its parameters only while it runs, the rest belongs to the root. Parameters
    stay float32 (bf16 compute comes from autocast). Works on CPU over gloo, which accelerate's
    own FSDP plugin refuses, so the distributed path is tested on CPU as it runs on GPUs."""
    from torch.distributed.fsdp import fully_shard

    for unit in units:
        fully_shard(unit)
    fully_shard(model)
    return model


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> tuple[dict, dict]:
    """(model state dict, optimizer state dict), whole and on the CPU. With FSDP every process
    must call it (the shards are gathered) and only the main process receives them (others get
    empty dicts); without, it is a plain state_dict()."""
    if not sharded:
        return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, sharded: bool) -> None:
    """Restore a full_state() optimizer state (every process passes the same whole state)."""
    if not sharded:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def flow_matching_loss(transformer, latents: torch.Tensor, text: torch.Tensor, sigmas: torch.Tensor,
                       noise: torch.Tensor, condition: torch.Tensor | None = None,
                       image_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample flow-matching loss, shape (B,).

    latents: normalised clean latents (B, C, F, h, w); frame 0 encodes the input image.
    text: prompt embeddings as the pipeline makes them (B, L, D).
    condition: None for expand_timesteps conditioning; else the pipeline's concat condition
    (B, 4 + C, F, h, w) = [first-frame mask, image latent] (Wan2.1 / A14B).
    """
    pred, target, first = flow_prediction(transformer, latents, text, sigmas, noise, condition, image_embeds)
    err = (pred.float() - target.float()).pow(2)[:, :, first:]
    return err.mean(dim=(1, 2, 3, 4))


def flow_prediction(transformer, latents: torch.Tensor, text: torch.Tensor, sigmas: torch.Tensor,
                    noise: torch.Tensor, condition: torch.Tensor | None = None,
                    image_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The transformer's velocity on the latents noised to `sigmas` (as flow_matching_loss feeds it), the
    target velocity noise - latents, and the first frame the loss counts (1 under expand_timesteps: the
    conditioning frame is given clean). The clean-clip prediction is latents + sigma (target - pred)."""
    device = next(transformer.parameters()).device
    latents, text, sigmas, noise = (t.to(device) for t in (latents, text, sigmas, noise))
    condition = condition.to(device) if condition is not None else None
    image_embeds = image_embeds.to(device) if image_embeds is not None else None
    b = latents.shape[0]
    s = sigmas.view(b, 1, 1, 1, 1).to(latents.dtype)
    noisy = (1 - s) * latents + s * noise
    target = noise - latents
    if condition is None:
        noisy = torch.cat([latents[:, :, :1], noisy[:, :, 1:]], dim=2)
        _, ph, pw = getattr(transformer, "module", transformer).config.patch_size  # also under DDP
        per_frame = (latents.shape[3] // ph) * (latents.shape[4] // pw)
        t = (sigmas * 1000).view(b, 1).to(latents.dtype)
        timestep = torch.cat([torch.zeros(b, per_frame, dtype=t.dtype, device=t.device),
                              t.expand(b, per_frame * (latents.shape[2] - 1))], dim=1)
        model_input, first = noisy, 1
    else:
        model_input, timestep, first = torch.cat([noisy, condition], dim=1), sigmas * 1000, 0
    pred = transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=text,
                       encoder_hidden_states_image=image_embeds, return_dict=False)[0]
    return pred, target, first


VALIDATION_SIGMAS = (0.2, 0.4, 0.6, 0.8)


def name_seed(*parts: object) -> int:
    """A stable 63-bit seed from names (Python's hash() is salted per process)."""
    import hashlib

    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def validation_batch(latents: torch.Tensor, key: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed validation draws of one effect: every clip at every VALIDATION_SIGMAS value with
    noise seeded by `key`, so base, reference and predicted LoRAs see the same problems.
    Returns (clip index, sigmas, noise) for len(latents)·len(VALIDATION_SIGMAS) evaluations."""
    n, k = len(latents), len(VALIDATION_SIGMAS)
    index = torch.arange(n).repeat_interleave(k)
    sigmas = torch.tensor(VALIDATION_SIGMAS).repeat(n)
    g = torch.Generator().manual_seed(name_seed("validation", key))
    noise = torch.randn((n * k, *latents.shape[1:]), generator=g)
    return index, sigmas, noise


@torch.no_grad()
def validation_loss(transformer, latents: torch.Tensor, text: torch.Tensor, key: str,
                    batch_size: int = 16, before: callable = None) -> float:
    """Mean flow-matching loss over an effect's fixed validation draws (see validation_batch).
    `before(rows)` may return a context manager applied around each forward (adapter routing)."""
    from contextlib import nullcontext

    index, sigmas, noise = validation_batch(latents, key)
    total = 0.0
    for start in range(0, len(index), batch_size):
        rows = slice(start, start + batch_size)
        picks = index[rows]
        with before(picks) if before else nullcontext():
            losses = flow_matching_loss(transformer, latents[picks].float(), text[picks].float(), sigmas[rows], noise[rows])
        total += float(losses.sum())
    return total / len(index)
