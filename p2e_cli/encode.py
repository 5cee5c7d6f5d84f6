"""Encoded clips: VAE latents and prompt embeddings of curated clips, cached per base.

Training never re-encodes: `encode_clips` writes `cache/encoded/<base id>/<clip id>.safetensors`
(normalised latents exactly as the pipeline normalises them, and the caption's embedding exactly
as the pipeline encodes prompts) and `load_encoded` stacks them for a trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import console
from .curate import load_clip
from .errors import P2ERuntimeError
from .files import atomic_write
from .registry import Record, Registry
from .wan import base_settings, load_pipeline


@dataclass
class EncodeReport:
    encoded: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip id, reason)

    def to_json(self) -> dict[str, Any]:
        return {"encoded": len(self.encoded), "cached": len(self.cached),
                "skipped": [{"clip": c, "reason": r} for c, r in self.skipped]}


def cache_path(reg: Registry, base: Record, clip: Record) -> Path:
    return reg.folder("cache", "encoded", base.id) / f"{clip.id}.safetensors"


def check_trainable(pipe) -> None:
    if not pipe.config.expand_timesteps:
        raise P2ERuntimeError(
            "training on channel-concat I2V bases (Wan2.1, Wan2.2 A14B) is not built yet; "
            "bases with expand_timesteps conditioning (the embedded worlds, Wan2.2 TI2V) train today",
            hint="see the issue about real Wan scale")


def clip_problem(frames: np.ndarray, settings: dict[str, Any]) -> str | None:
    """Why a clip cannot train on a base (None if it can): it needs at least the base's frames."""
    if frames.shape[0] < settings["frames"]:
        return f"{frames.shape[0]} frames, the base trains on {settings['frames']}"
    return None


def to_video_tensor(frames: np.ndarray, settings: dict[str, Any]) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> (3, frames, h, w) in [-1, 1] at the base's size (first frames kept)."""
    import torch.nn.functional as F

    width, height = settings["size"]
    video = torch.from_numpy(np.ascontiguousarray(frames[: settings["frames"]])).float().div(127.5).sub(1)
    video = video.permute(0, 3, 1, 2)
    if video.shape[-2:] != (height, width):
        video = F.interpolate(video, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return video.permute(1, 0, 2, 3)


@torch.no_grad()
def encode_latents(pipe, videos: torch.Tensor) -> torch.Tensor:
    """Videos (B, 3, T, H, W) in [-1, 1] -> normalised latents, as the pipeline normalises them."""
    vae = pipe.vae
    latents = vae.encode(videos.to(vae.dtype)).latent_dist.mode().float()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    return (latents - mean) / std


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> np.ndarray:
    """encode_latents' inverse for one clip: normalised latents (1, C, F, h, w) -> uint8 frames (T, H, W, 3)."""
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    clip = vae.decode((latents * std + mean).to(vae.dtype)).sample[0].float().clamp(-1, 1)
    return ((clip + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()


@torch.no_grad()
def encode_texts(pipe, texts: list[str], max_sequence_length: int) -> torch.Tensor:
    """Prompt embeddings exactly as WanImageToVideoPipeline makes them (zero-padded to max length)."""
    embeds, _ = pipe.encode_prompt(list(texts), do_classifier_free_guidance=False,
                                   max_sequence_length=max_sequence_length, device=torch.device("cpu"))
    return embeds.float()


def encode_clips(reg: Registry, base: Record, clips: list[Record], pipe=None, chunk: int = 8) -> EncodeReport:
    """Encode clips not yet cached for this base; report what was encoded, cached or skipped."""
    from safetensors.torch import save_file

    report = EncodeReport()
    settings = base_settings(base)
    todo = []
    for clip in clips:
        if cache_path(reg, base, clip).exists():
            report.cached.append(clip.id)
        else:
            todo.append(clip)
    if not todo:
        return report
    pipe = pipe or load_pipeline(base)
    check_trainable(pipe)
    with console.progress(f"encode clips for {base.name or base.id}", total=len(todo)) as advance:
        for start in range(0, len(todo), chunk):
            batch, videos = [], []
            for clip in todo[start:start + chunk]:
                frames = load_clip(reg, clip)
                problem = clip_problem(frames, settings)
                if problem:
                    report.skipped.append((clip.id, problem))
                    continue
                batch.append(clip)
                videos.append(to_video_tensor(frames, settings))
            if batch:
                latents = encode_latents(pipe, torch.stack(videos))
                texts = encode_texts(pipe, [c.data.get("caption", "") for c in batch], settings["max_sequence_length"])
                for clip, latent, text in zip(batch, latents, texts):
                    with atomic_write(cache_path(reg, base, clip)) as tmp:
                        save_file({"latents": latent.half().contiguous(), "text": text.half().contiguous()}, str(tmp))
                    report.encoded.append(clip.id)
            advance(len(todo[start:start + chunk]))
    return report


def load_encoded(reg: Registry, base: Record, clips: list[Record]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked (latents, text) of encoded clips (encode them first with encode_clips)."""
    from safetensors.torch import load_file

    tensors = [load_file(str(cache_path(reg, base, clip))) for clip in clips]
    return torch.stack([t["latents"] for t in tensors]), torch.stack([t["text"] for t in tensors])
