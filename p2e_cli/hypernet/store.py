"""A trained hypernetwork on disk, and generating LoRAs with it.

File: one safetensors file, the network's state dict plus `library.embeddings` (a sentence
embedding per library effect it learned, to show users which effects a prompt resembles), and
metadata `p2e.hypernet` (JSON): config, layer specs, text encoder, the base's layer-table hash,
the library's effect names and prompts.

`Generator` loads it for a base, reads only the adapted layers' W0 from the base's safetensors
(never the whole pipeline), and caches the prompt-independent weight encoding on disk keyed by
(base weights, hypernet file), so a warm `generate` pays only for text encoding, fusion and decode.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..errors import P2EError
from ..files import sha256_file
from ..schemas import RETIRED_WHY, split_retired
from .model import HypernetConfig, Hypernetwork, LayerSpec

META_KEY = "p2e.hypernet"
FORMAT = 2  # 2: pooled-prompt conditioning, cosine-basis features, head hidden layer (session 4)


def save_hypernet(path: Path, net: Hypernetwork, *, text_encoder: str, layer_table: str, target: str,
                  library: list[tuple[str, str]], library_embeddings: torch.Tensor, dtype: torch.dtype = torch.float32,
                  metrics: dict[str, Any] | None = None) -> Path:
    """Write the network (in `dtype`; buffers and embeddings too) with everything needed to use it."""
    from safetensors.torch import save_file

    from ..files import atomic_write

    tensors = {k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items()}
    tensors["library.embeddings"] = library_embeddings.to(dtype).contiguous()
    meta = {"format": FORMAT, "config": asdict(net.config), "layers": [list(asdict(s).values()) for s in net.layers],
            "text_encoder": text_encoder, "layer_table": layer_table, "target": target,
            "library": [list(item) for item in library], "metrics": metrics or {}}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


def load_hypernet(path: Path) -> tuple[Hypernetwork, dict[str, Any], torch.Tensor]:
    """(network in float32, eval mode; its metadata; library embeddings)."""
    from safetensors import SafetensorError, safe_open

    from ..files import readable_file

    readable_file(path, "hypernetwork file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise P2EError(f"{path} is not a readable safetensors file: {e}") from e
    if raw is None:
        raise P2EError(f"{path} is not a p2e hypernetwork (no {META_KEY} metadata)",
                       hint="train one with p2e train hypernet, or use a registry hypernet id")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise P2EError(f"{path} holds a format-{meta.get('format')} hypernetwork; this p2e reads format {FORMAT}",
                       hint="retrain it with this version (p2e train hypernet RECIPE)")
    settings, turned_on = split_retired(HypernetConfig, meta["config"])
    if turned_on:
        raise P2EError(f"{path} was trained with {', '.join(turned_on)}, {RETIRED_WHY}",
                       hint="retrain it with this version (p2e train hypernet RECIPE)")
    config = HypernetConfig(**settings)
    net = Hypernetwork(config, [LayerSpec(*row) for row in meta["layers"]])
    embeddings = tensors.pop("library.embeddings")
    net.load_state_dict(tensors)
    return net.eval(), meta, embeddings


def encode_base(net: Hypernetwork, transformer_dir: Path, names: list[str], cache: Path | None = None) -> list[dict[str, torch.Tensor]]:
    """The prompt-independent weight encoding of a base, reading its safetensors one adapted layer
    at a time (a 14B base never sits in memory). With `cache`, the result is stored there, and each
    layer's part is kept in `<cache>.parts/` until the end, so an interrupted encoding resumes
    from the layers already done."""
    import shutil

    from safetensors.torch import load_file, save_file

    from .. import console
    from ..canon import base_weights
    from ..files import atomic_write

    def store(path: Path, tensors: dict[str, torch.Tensor]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))

    if cache is not None and cache.is_file():
        flat = load_file(str(cache))
        return [{k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(f"{i}.")} for i in range(len(net.predictors))]
    parts_dir = cache.with_suffix(".parts") if cache is not None else None
    parts = []
    with torch.no_grad(), console.progress("encode base weights", total=len(names)) as advance:
        for i, name in enumerate(names):
            part_file = parts_dir / f"{i:05d}.safetensors" if parts_dir is not None else None
            if part_file is not None and part_file.is_file():
                parts.append(load_file(str(part_file)))
            else:
                [(_, w)] = base_weights(transformer_dir, [f"{name}.weight"])
                parts.append(net.encode_layer(i, w))
                del w
                if part_file is not None:
                    store(part_file, parts[-1])
            advance()
        encoded = net.encode_parts(parts)
    del parts
    if cache is not None:
        store(cache, {f"{i}.{k}": v for i, part in enumerate(encoded) for k, v in part.items()})
        shutil.rmtree(parts_dir, ignore_errors=True)
    return encoded


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX), through oneDNN."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compute_dtype(precision: str) -> torch.dtype:
    """fp32 | bf16 | auto: bf16 where the CPU has it in hardware (on the tiny world ~1.6x faster
    than fp32, ΔW within ~2% of it: docs/results.md), fp32 elsewhere (emulated bf16 is slower)."""
    if precision not in PRECISIONS:
        raise P2EError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bf16" if native_bf16() else "fp32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


class Generator:
    """A hypernetwork bound to one base: prompts -> canonical LoRA factors per layer (float32),
    computed in float32 or, with precision bf16 (or auto on a CPU with bf16 in hardware), bfloat16."""

    def __init__(self, hypernet_path: Path, base: Any, cache_dir: Path | None = None, precision: str = "fp32"):
        from ..wan import base_path

        self.path = Path(hypernet_path)
        self.net, self.meta, self.library_embeddings = load_hypernet(self.path)
        if base.data.get("layer_table") != self.meta["layer_table"]:
            raise P2EError(f"hypernetwork {self.path.name} was trained for another layer table than base "
                           f"{base.name or base.id}", hint="pass the base it was trained for (--base), or train one for this base")
        self.base = base
        self.names = [row[0] for row in self.meta["layers"]]
        self.rank = self.net.config.rank
        self._text = None
        self.dtype = compute_dtype(precision)
        encoded = self._encoded(base_path(base) / "transformer", cache_dir)  # float32, as cached
        self.encoded = [{k: v.to(self.dtype) for k, v in part.items()} for part in encoded]
        self.net.to(self.dtype)

    def _encoded(self, transformer_dir: Path, cache_dir: Path | None) -> list[dict[str, torch.Tensor]]:
        from ..canon import base_weight_files

        cache = None
        if cache_dir is not None:
            import hashlib

            files = sorted({str(p) for p in base_weight_files(transformer_dir).values()})
            key = "|".join([sha256_file(self.path)] + [f"{f}:{Path(f).stat().st_size}:{Path(f).stat().st_mtime_ns}" for f in files])
            cache = cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"
        return encode_base(self.net, transformer_dir, self.names, cache)

    @property
    def precision(self) -> str:
        """What it computes in: float32 or bfloat16."""
        return str(self.dtype).removeprefix("torch.")

    @property
    def text(self):
        if self._text is None:
            from .text import TextEncoder

            self._text = TextEncoder(self.meta["text_encoder"]).to(self.dtype)
        return self._text

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """One {layer name: (B (out, r), A (r, in))} per prompt, ΔW = B·A (alpha = rank)."""
        embeds, mask = self.text(prompts)
        factors = self.net(self.encoded, embeds.to(self.dtype), mask)
        if self.net.config.prior_rank:  # shrunk toward the library mean: back to rank r, best approximation
            from ..canon import truncate

            factors = [truncate(b.float(), a.float(), self.rank) for b, a in self.net.shrunk(factors)]
        factors = [(b.float(), a.float()) for b, a in factors]
        return [{name: (b[i], a[i]) for name, (b, a) in zip(self.names, factors)} for i in range(len(prompts))]

    def nearest(self, prompts: list[str], k: int = 3) -> list[list[tuple[str, float]]]:
        """The library effects whose prompts are closest to each prompt (cosine of sentence embeddings)."""
        library = self.meta["library"]
        if not library:
            return [[] for _ in prompts]
        sims = self.text.sentence(prompts) @ self.library_embeddings.T
        top = sims.topk(min(k, len(library)), dim=1)
        return [[(library[j][0], float(v)) for v, j in zip(values, indices)]
                for values, indices in zip(top.values.tolist(), top.indices.tolist())]
