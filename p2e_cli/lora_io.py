"""LoRA files: the one module that knows key layouts, metadata and validation.

In memory a LoRA is a `LoraFile`: `layers` keyed by the diffusers module path inside the
transformer ("blocks.0.attn1.to_q") holding A (r x in), B (out x r) and alpha, so that
ΔW = (alpha / r) · B · A; and `diffs`, full deltas keyed by the diffusers *parameter* path
("blocks.0.attn1.to_q.bias", "blocks.0.norm2.weight"), already at their full effect.

Layouts read (one per row; all give the same ΔW):

  diffusers  transformer.blocks.0.attn1.to_q.lora_A.weight   alpha: lora_adapter_metadata JSON
  peft       [base_model.model.]blocks.0.attn1.to_q.lora_A.weight   alpha: adapter_config.json
  wan        diffusion_model.blocks.0.self_attn.q.lora_A.weight  + .alpha
  comfyui    diffusion_model.blocks.0.self_attn.q.lora_down.weight  + .alpha
  musubi     lora_unet_blocks_0_self_attn_q.lora_down.weight  + .alpha   (kohya)
  diffsynth  blocks.0.self_attn.q.lora_A.default.weight   (no alpha: scale 1)

with `.diff` / `.diff_b` (full weight / bias deltas) and Wan2.1's image projections
`cross_attn.k_img/v_img` <-> `attn2.add_k_proj/add_v_proj`. A missing alpha means alpha = rank,
diffusers' convention. Only safetensors are read; pickles are refused before any byte is
unpickled. The native format is what diffusers' `WanLoraLoaderMixin.save_lora_weights` writes, plus
p2e, ModelSpec and kohya metadata.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from . import __version__
from .errors import P2EError
from .files import atomic_write, check_output_path, readable_file
from .wan import IMAGE_TYPES, MODULE_PATHS

if TYPE_CHECKING:
    import torch

FORMATS = ("diffusers", "peft", "wan", "comfyui", "musubi", "diffsynth")
WRITE_FORMATS = ("diffusers", "wan", "comfyui", "musubi")
MAX_HEADER = 100_000_000  # the safetensors library's own limit
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY
IMPLEMENTATIONS = {"diffusers": "https://github.com/huggingface/diffusers", "wan": "https://github.com/Wan-Video/Wan2.1",
                   "comfyui": "https://github.com/Wan-Video/Wan2.1", "musubi": "https://github.com/Wan-Video/Wan2.1"}
ARCHITECTURES = {"wan21": "wan2.1-i2v", "wan22": "wan2.2-i2v"}

# Original Wan module names -> diffusers module paths (as diffusers' single-file converter maps them).
# Inside a block:
_BLOCK_WAN = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v", "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k", "cross_attn.v": "attn2.to_v", "cross_attn.o": "attn2.to_out.0",
    "cross_attn.k_img": "attn2.add_k_proj", "cross_attn.v_img": "attn2.add_v_proj",
    "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2",
    "self_attn.norm_q": "attn1.norm_q", "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.norm_q": "attn2.norm_q", "cross_attn.norm_k": "attn2.norm_k", "cross_attn.norm_k_img": "attn2.norm_added_k",
    "norm1": "norm1", "norm2": "norm3", "norm3": "norm2",  # Wan's norm3 is the cross-attention norm
    "modulation": "scale_shift_table",
}
# Outside the blocks:
_TOP_WAN = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
}
_BLOCK_DIFFUSERS = {v: k for k, v in _BLOCK_WAN.items()}
_TOP_DIFFUSERS = {v: k for k, v in _TOP_WAN.items()}
_PARAMETERS = {"scale_shift_table"}  # a parameter, not a module: its delta has no .weight suffix
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_MUSUBI_BLOCK_RE = re.compile(r"^blocks_(\d+)_(.+)$")
_MODULE_TYPE = {path: t for t, path in MODULE_PATHS.items()}


def wan_to_diffusers(name: str) -> str:
    """An original Wan module path ('blocks.3.cross_attn.k_img') as a diffusers one ('blocks.3.attn2.add_k_proj')."""
    if m := _BLOCK_RE.match(name):
        return f"blocks.{m[1]}.{_BLOCK_WAN[m[2]]}"
    return _TOP_WAN[name]


def diffusers_to_wan(name: str) -> str:
    if m := _BLOCK_RE.match(name):
        return f"blocks.{m[1]}.{_BLOCK_DIFFUSERS[m[2]]}"
    return _TOP_DIFFUSERS[name]


def musubi_to_wan(name: str) -> str:
    """kohya/musubi flatten dots to '_' ('blocks_0_cross_attn_k_img'); undo it by lookup, since
    the names themselves contain '_'."""
    if m := _MUSUBI_BLOCK_RE.match(name):
        rest = {k.replace(".", "_"): k for k in _BLOCK_WAN}[m[2]]
        return f"blocks.{m[1]}.{rest}"
    return {k.replace(".", "_"): k for k in _TOP_WAN}[name]


def module_type(name: str) -> str | None:
    """The layer-table module type of a diffusers module path (None outside the blocks' linears)."""
    m = _BLOCK_RE.match(name)
    return _MODULE_TYPE.get(m[2]) if m else None


def block_of(name: str) -> int | None:
    m = _BLOCK_RE.match(name)
    return int(m[1]) if m else None


@dataclass
class LoraLayer:
    """One low-rank update ΔW = (alpha / rank) · B · A."""

    A: torch.Tensor  # (rank, in)
    B: torch.Tensor  # (out, rank)
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.B.shape[0]), int(self.A.shape[1]))

    def delta(self) -> torch.Tensor:
        return self.scale * (self.B.float() @ self.A.float())


@dataclass
class LoraFile:
    layers: dict[str, LoraLayer]
    diffs: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    format: str = "diffusers"
    path: Path | None = None

    @property
    def ranks(self) -> list[int]:
        return sorted({l.rank for l in self.layers.values()})

    @property
    def alphas(self) -> list[float]:
        return sorted({l.alpha for l in self.layers.values()})

    @property
    def rank(self) -> int:
        """The most common rank (what a single number should say)."""
        return Counter(l.rank for l in self.layers.values()).most_common(1)[0][0] if self.layers else 0

    @property
    def alpha(self) -> float:
        return Counter(l.alpha for l in self.layers.values()).most_common(1)[0][0] if self.layers else 0.0

    def p2e(self, key: str, default: str | None = None) -> str | None:
        return self.metadata.get(f"p2e.{key}", default)


def delta_weights(lora: LoraFile) -> dict[str, torch.Tensor]:
    """{module: ΔW = (alpha / rank) · B · A} in float32, for every LoRA layer."""
    return {name: layer.delta() for name, layer in lora.layers.items()}


def block_norms(lora: LoraFile) -> dict[str, float]:
    """‖ΔW‖_F per block (sqrt of the sum of squared norms of its layers); 'other' for the rest."""
    sums: dict[int, float] = {}
    for name, layer in lora.layers.items():
        block = block_of(name)
        key = block if block is not None else -1  # -1 sorts 'other' apart
        sums[key] = sums.get(key, 0.0) + float(layer.delta().pow(2).sum())
    return {(str(k) if k >= 0 else "other"): math.sqrt(v) for k, v in sorted(sums.items(), key=lambda kv: (kv[0] < 0, kv[0]))}


# -- reading -----------------------------------------------------------------------------------


def _check_safetensors(path: Path) -> None:
    """Refuse pickles and anything that is not a whole safetensors file before torch reads a byte:
    the header must be a JSON object of floating-point tensors whose data exactly fills the rest of
    the file (so a truncated download, or junk, is refused at once)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
        length = struct.unpack("<Q", head[:8])[0] if len(head) == 9 else 0
        # a safetensors file starts with its header length (u64 little-endian) and then '{'; that test
        # comes first, since the length's low byte may be anything, 0x80 (pickle's opcode) included
        if not (len(head) == 9 and length + 8 <= size and head[8:9] == b"{"):
            if head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
                raise P2EError(f"{path} is a pickle / PyTorch checkpoint; p2e never loads pickles (they can run code)",
                               hint="convert it to .safetensors with a tool you trust, then retry")
            raise P2EError(f"{path} is not a safetensors file", hint="LoRA files must be .safetensors")
        if length > MAX_HEADER:
            raise P2EError(f"{path} has a {length}-byte safetensors header, more than a LoRA file has")
        f.seek(8)
        raw = f.read(length)
    damaged = "the file may be truncated or corrupt"
    try:
        header = json.loads(raw)
    except ValueError as e:  # not UTF-8, or not JSON
        raise P2EError(f"cannot read {path}: its header is not valid JSON ({e})", hint=damaged) from None
    end = 0
    for key, entry in (header.items() if isinstance(header, dict) else [("header", header)]):
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise P2EError(f"cannot read {path}: its header entry {key!r:.60} is not a tensor", hint=damaged)
        if entry.get("dtype") not in FLOAT_DTYPES:
            raise P2EError(f"{key}: holds non-float values ({entry.get('dtype')!r:.20})",
                           hint="LoRA factors are floating point (F32, F16, BF16)")
        end = max(end, offsets[1])
    if 8 + length + end != size:
        raise P2EError(f"cannot read {path}: its header describes {end} bytes of tensors, the file holds "
                       f"{size - 8 - length}", hint=damaged)


def _load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise P2EError(f"cannot read {path}: {e}", hint="the file may be truncated or corrupt") from e
    return tensors, metadata


def detect_format(keys: Iterable[str]) -> str:
    keys = list(keys)
    if not keys:
        raise P2EError("the file holds no tensors")
    prefixes = {"lora_unet_" if k.startswith("lora_unet_") else k.split(".", 1)[0] for k in keys}
    if prefixes == {"lora_unet_"}:
        return "musubi"
    if prefixes == {"diffusion_model"}:
        return "wan" if any(".lora_A." in k for k in keys) else "comfyui"
    if prefixes == {"transformer"}:
        return "diffusers"
    if all(k.startswith("base_model.model.") for k in keys):
        return "peft"
    if not any(p in ("lora_unet_", "diffusion_model", "transformer", "base_model") for p in prefixes):
        wan_names = any(re.search(r"\.(self_attn|cross_attn)\.|\.ffn\.[02]\.", k) for k in keys)
        return "diffsynth" if wan_names or any(".default." in k for k in keys) else "peft"
    raise P2EError(f"mixed or unknown LoRA key layout (key prefixes: {', '.join(sorted(prefixes))})",
                   hint=f"p2e reads these layouts: {', '.join(FORMATS)}")


# role of a key by its suffix; peft state dicts may carry an adapter name (lora_A.default.weight)
_SUFFIX_RE = re.compile(r"^(?P<module>.+?)\.(?:(?P<lora>lora_A|lora_B|lora_down|lora_up)(?:\.[A-Za-z0-9_]+)?\.(?P<param>weight|bias)"
                        r"|(?P<other>alpha|diff|diff_b|dora_scale|lora_magnitude_vector(?:\.[A-Za-z0-9_]+)?(?:\.weight)?))$")
_MUSUBI_RE = re.compile(r"^lora_unet_(?P<module>[A-Za-z0-9_]+?)\.(?:(?P<lora>lora_down|lora_up)\.(?P<param>weight)|(?P<other>alpha|diff|diff_b|dora_scale))$")


def _diffusers_name(raw: str, fmt: str, key: str) -> str:
    """The diffusers module path of a key's module, by layout."""
    try:
        if fmt == "musubi":
            return wan_to_diffusers(musubi_to_wan(raw))
        if fmt in ("wan", "comfyui"):
            return wan_to_diffusers(raw.removeprefix("diffusion_model."))
        if fmt == "diffsynth":
            return wan_to_diffusers(raw)
    except KeyError:
        raise P2EError(f"{key}: unknown Wan module {raw!r}", hint="p2e maps the Wan transformer's own module names") from None
    return raw.removeprefix("transformer.").removeprefix("base_model.model.")


def _pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """peft's rank/alpha_pattern lookup (peft.utils.other.get_pattern_key): a key matches a module
    whose path ends with it at a dot boundary; '^' anchors it to the start."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _adapter_config(metadata: dict[str, str], fmt: str, path: Path) -> dict[str, Any]:
    """The peft LoraConfig fields that set alpha: from diffusers' embedded metadata or a peft
    adapter_config.json beside the file."""
    if fmt == "diffusers" and metadata.get(METADATA_KEY):
        where = f"{path}: metadata {METADATA_KEY}"
        try:
            raw = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as e:
            raise P2EError(f"{where} is not valid JSON") from e
        if not isinstance(raw, dict):
            raise P2EError(f"{where} is not a JSON object")
        return _checked_config({k.removeprefix("transformer."): v for k, v in raw.items() if k.startswith("transformer.")},
                               where)
    if fmt == "peft" and (path.parent / "adapter_config.json").is_file():
        where = str(path.parent / "adapter_config.json")
        try:
            raw = json.loads((path.parent / "adapter_config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise P2EError(f"{where} is not valid JSON") from e
        if not isinstance(raw, dict):
            raise P2EError(f"{where} is not a JSON object")
        return _checked_config(raw, where)
    return {}


def _checked_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The alpha fields of a LoRA config, checked before use: lora_alpha a number, alpha_pattern a
    mapping of valid regular expressions to numbers (a file's metadata is untrusted input)."""
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if config.get("lora_alpha") is not None and not number(config["lora_alpha"]):
        raise P2EError(f"{where}: lora_alpha must be a number, got {config['lora_alpha']!r:.40}")
    patterns = config.get("alpha_pattern") or {}
    if not isinstance(patterns, dict):
        raise P2EError(f"{where}: alpha_pattern must be a mapping of module patterns to numbers")
    for key, value in patterns.items():
        if not number(value):
            raise P2EError(f"{where}: alpha_pattern[{key!r:.40}] must be a number, got {value!r:.40}")
        try:
            re.compile(key)
        except re.error as e:
            raise P2EError(f"{where}: alpha_pattern key {key!r:.40} is not a valid pattern ({e})") from None
    return config


def read_lora(path: Path | str) -> LoraFile:
    """Read a LoRA file in any supported layout, with alpha and rank honoured exactly.

    Bad input is a P2EError naming the key: pickles, non-safetensors files, unknown keys, A/B
    shapes that disagree, NaN/Inf values, DoRA (which p2e cannot apply)."""
    path = readable_file(path, "LoRA file")
    tensors, metadata = _load_tensors(path)
    fmt = detect_format(tensors)
    config = _adapter_config(metadata, fmt, path)
    parts: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        match = (_MUSUBI_RE if fmt == "musubi" else _SUFFIX_RE).match(key)
        if not match:
            raise P2EError(f"{key}: not a LoRA key p2e understands ({fmt} layout)",
                           hint="expected lora_A/lora_B, lora_down/lora_up, alpha, diff or diff_b keys")
        role = match["other"] or f"{match['lora']}.{match['param']}"
        if role.startswith(("dora_scale", "lora_magnitude_vector")):
            raise P2EError(f"{key}: DoRA LoRAs are not supported", hint="use a plain LoRA (no magnitude vectors)")
        if not bool(tensor.is_floating_point()) or not bool(tensor.isfinite().all()):
            raise P2EError(f"{key}: holds NaN/Inf or non-float values", hint="the file is damaged or was saved from a diverged run")
        module = _diffusers_name(match["module"], fmt, key)
        slot = parts.setdefault(module, {})
        role = {"lora_down.weight": "A", "lora_A.weight": "A", "lora_up.weight": "B", "lora_B.weight": "B",
                "lora_B.bias": "bias_B", "alpha": "alpha", "diff": "diff", "diff_b": "diff_b"}.get(role)
        if role is None:
            raise P2EError(f"{key}: unexpected LoRA parameter")
        if role in slot:
            raise P2EError(f"{key}: duplicates another key for module {module}")
        slot[role] = (key, tensor)
    return LoraFile(*_assemble(parts, fmt, config, path), metadata=metadata, format=fmt, path=path)


def _assemble(parts: dict[str, dict[str, Any]], fmt: str, config: dict[str, Any], path: Path
              ) -> tuple[dict[str, LoraLayer], dict[str, torch.Tensor]]:
    layers: dict[str, LoraLayer] = {}
    diffs: dict[str, torch.Tensor] = {}
    for module, slot in parts.items():
        if ("A" in slot) != ("B" in slot):
            key = slot.get("A", slot.get("B"))[0]
            raise P2EError(f"{key}: has no matching {'lora_B/up' if 'A' in slot else 'lora_A/down'} key for {module}")
        if "A" in slot:
            (key_a, a), (key_b, b) = slot["A"], slot["B"]
            a, b = _linear_factor(a, key_a), _linear_factor(b, key_b)
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or a.shape[0] == 0:
                raise P2EError(f"{key_b}: shape {tuple(b.shape)} does not fit {key_a} {tuple(a.shape)}",
                               hint="B must be (out, r) and A (r, in) with the same rank r")
            if "bias_B" in slot and tuple(slot["bias_B"][1].shape) != (b.shape[0],):
                raise P2EError(f"{slot['bias_B'][0]}: shape {tuple(slot['bias_B'][1].shape)} does not fit {key_b} "
                               f"{tuple(b.shape)}", hint="a LoRA bias holds one value per output of its layer")
            rank = int(a.shape[0])
            alpha = _alpha(slot, module, rank, config)
            layers[module] = LoraLayer(a, b, alpha)
            # peft scales lora_B's bias with the layer: store its full effect. All-zero biases are
            # the padding diffusers needs when only some layers have one, not deltas.
            if "bias_B" in slot and bool(slot["bias_B"][1].any()):
                diffs[f"{module}.bias"] = slot["bias_B"][1] * (alpha / rank)
        elif "alpha" in slot or "bias_B" in slot:
            raise P2EError(f"{slot.get('alpha', slot.get('bias_B'))[0]}: no LoRA factors for module {module}")
        if "diff" in slot:
            param = module if module.rsplit(".", 1)[-1] in _PARAMETERS else f"{module}.weight"
            diffs[param] = slot["diff"][1]
        if "diff_b" in slot:
            diffs[f"{module}.bias"] = diffs.get(f"{module}.bias", 0) + slot["diff_b"][1]
    if not layers and not diffs:
        raise P2EError(f"{path} holds no LoRA layers")
    return layers, diffs


def _linear_factor(tensor: torch.Tensor, key: str) -> torch.Tensor:
    """Linear LoRA factors; kohya saves some as (out, in, 1, 1) convolutions."""
    if tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
        return tensor[:, :, 0, 0]
    if tensor.ndim != 2:
        raise P2EError(f"{key}: expected a 2-D LoRA factor, got shape {tuple(tensor.shape)}")
    return tensor


def _alpha(slot: dict[str, Any], module: str, rank: int, config: dict[str, Any]) -> float:
    if "alpha" in slot:
        key, value = slot["alpha"]
        if value.numel() != 1:
            raise P2EError(f"{key}: alpha must be a single number, got shape {tuple(value.shape)}")
        return float(value.reshape(()).item())
    if not config:
        return float(rank)  # no alpha anywhere: diffusers' convention, scale 1
    alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", rank)))
    # rsLoRA scales by alpha/sqrt(r); express it as the alpha that gives the same alpha/r
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


# -- validation against a base -----------------------------------------------------------------


def check_against_base(lora: LoraFile, shapes: Mapping[str, tuple[int, ...]]) -> tuple[list[str], list[str]]:
    """(problems, skipped): layers/diffs the base lacks or whose shapes differ, naming each; and
    image-projection layers (Wan2.1 add_k/add_v) skipped because this base has none."""
    problems, skipped = [], []
    has_image = any(".attn2.add_k_proj." in name for name in shapes)
    for name, layer in lora.layers.items():
        weight = shapes.get(f"{name}.weight")
        if weight is None:
            if module_type(name) in IMAGE_TYPES and not has_image:
                skipped.append(name)
            else:
                problems.append(f"{name}: the base has no such layer")
        elif len(weight) != 2 or tuple(weight) != layer.shape:
            problems.append(f"{name}: LoRA shape {layer.shape} (out, in) but the base layer is {tuple(weight)}")
    for name, diff in lora.diffs.items():
        module = name.rsplit(".", 1)[0]
        if name not in shapes:
            if module_type(module) in IMAGE_TYPES and not has_image:
                skipped.append(name)
            else:
                problems.append(f"{name}: the base has no such parameter")
        elif tuple(shapes[name]) != tuple(diff.shape):
            problems.append(f"{name}: delta shape {tuple(diff.shape)} but the base parameter is {tuple(shapes[name])}")
    return problems, skipped


def fit_to_base(lora: LoraFile, shapes: Mapping[str, tuple[int, ...]], what: str = "the base") -> tuple[LoraFile, list[str]]:
    """The LoRA restricted to what the base has: a P2EError naming the keys when layers are missing
    or mis-shaped; image projections a Wan2.2 base lacks are dropped and returned (warn about them)."""
    problems, skipped = check_against_base(lora, shapes)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise P2EError(f"{lora.path or 'LoRA'} does not fit {what}: {'; '.join(problems[:3])}{more}",
                       hint="this LoRA was made for another base; check `p2e lora inspect FILE` and `p2e base show NAME`")
    kept = LoraFile({k: v for k, v in lora.layers.items() if k not in skipped},
                    {k: v for k, v in lora.diffs.items() if k not in skipped}, lora.metadata, lora.format, lora.path)
    return kept, skipped


# -- writing -----------------------------------------------------------------------------------


def _tensor_hash(tensors: Mapping[str, torch.Tensor]) -> str:
    """ModelSpec's hash_sha256: sha256 of the safetensors data section (tensor bytes, not the header)."""
    import hashlib

    from safetensors.torch import save

    blob = save(dict(tensors))
    header = struct.unpack("<Q", blob[:8])[0]
    return "0x" + hashlib.sha256(blob[8 + header:]).hexdigest()


def _peft_config(lora: LoraFile) -> dict[str, Any]:
    """The LoraConfig diffusers builds the adapter from (what save_lora_weights embeds)."""
    r, alpha = lora.rank, lora.alpha
    return {
        "r": r,
        "lora_alpha": alpha,
        "target_modules": sorted(lora.layers),
        "rank_pattern": {f"^{n}": l.rank for n, l in lora.layers.items() if l.rank != r},
        "alpha_pattern": {f"^{n}": l.alpha for n, l in lora.layers.items() if l.alpha != alpha},
        "lora_bias": any(f"{n}.bias" in lora.diffs for n in lora.layers),
        "use_dora": False,
        "use_rslora": False,
    }


def _has_lora_bias(lora: LoraFile) -> bool:
    return any(f"{name}.bias" in lora.diffs for name in lora.layers)


def _lora_bias(lora: LoraFile, name: str) -> torch.Tensor:
    """A LoRA layer's bias delta, zeros when it has none: with peft's lora_bias every adapted layer
    gets a lora_B.bias, and diffusers leaves any it is not given on the meta device."""
    import torch

    layer = lora.layers[name]
    return lora.diffs.get(f"{name}.bias", torch.zeros(layer.B.shape[0], dtype=layer.B.dtype))


def to_state_dict(lora: LoraFile, fmt: str = "diffusers") -> dict[str, torch.Tensor]:
    """The LoRA's tensors in a layout. Factors and alpha are kept as they are (never rescaled), so
    converting back gives bit-identical ΔW."""
    import torch

    if fmt not in WRITE_FORMATS:
        raise P2EError(f"cannot write LoRA layout {fmt!r}", hint=f"one of: {', '.join(WRITE_FORMATS)}")
    out: dict[str, torch.Tensor] = {}
    if fmt == "diffusers":
        biased = _has_lora_bias(lora)
        for name, layer in lora.layers.items():
            out[f"transformer.{name}.lora_A.weight"] = layer.A.contiguous()
            out[f"transformer.{name}.lora_B.weight"] = layer.B.contiguous()
            if biased:
                out[f"transformer.{name}.lora_B.bias"] = (_lora_bias(lora, name) / layer.scale).contiguous()
        other = [n for n in lora.diffs if not (n.endswith(".bias") and n[:-5] in lora.layers)]
        if other:
            raise P2EError(f"the diffusers layout cannot hold full deltas such as {other[0]}",
                           hint="convert it to the wan or comfyui layout instead, which keep .diff/.diff_b keys")
        return out

    def key(module: str, suffix: str) -> str:
        wan = diffusers_to_wan(module)
        return f"lora_unet_{wan.replace('.', '_')}.{suffix}" if fmt == "musubi" else f"diffusion_model.{wan}.{suffix}"

    down, up = ("lora_A.weight", "lora_B.weight") if fmt == "wan" else ("lora_down.weight", "lora_up.weight")
    try:
        for name, layer in lora.layers.items():
            out[key(name, down)] = layer.A.contiguous()
            out[key(name, up)] = layer.B.contiguous()
            out[key(name, "alpha")] = torch.tensor(float(layer.alpha), dtype=torch.float32)
        for name, diff in lora.diffs.items():
            module, _, param = name.rpartition(".")
            if param in _PARAMETERS:
                out[key(name, "diff")] = diff.contiguous()
            else:
                out[key(module, "diff_b" if param == "bias" else "diff")] = diff.contiguous()
    except KeyError as e:
        raise P2EError(f"module {e.args[0]!r} has no name in the original Wan layout",
                       hint="keep this LoRA in the diffusers layout") from None
    return out


def lora_metadata(lora: LoraFile, fmt: str, *, kind: str | None = None, base: Any = None, prompt: str | None = None,
                  parents: Iterable[str] = (), title: str | None = None, description: str | None = None,
                  strength: float | None = None, tensors: Mapping[str, torch.Tensor] | None = None) -> dict[str, str]:
    """The safetensors metadata p2e writes: diffusers' lora_adapter_metadata (native layout only:
    other loaders bake .alpha into the weights, and would scale twice), p2e.*, ModelSpec, kohya ss_*.
    Keys already in `lora.metadata` are kept unless given here. `base` is a base record (or dict
    with name/family/layer_table)."""
    base_data = getattr(base, "data", base) or {}
    base_name = getattr(base, "name", None) or base_data.get("name")
    family = base_data.get("family") or lora.p2e("family") or "wan"
    meta = {k: v for k, v in lora.metadata.items() if k != METADATA_KEY}
    given = {
        "p2e.kind": kind, "p2e.base": base_name, "p2e.layer_table": base_data.get("layer_table"),
        "p2e.prompt": prompt, "p2e.family": base_data.get("family"),
        "p2e.parents": json.dumps(list(parents)) if parents else None,
        "modelspec.title": title, "modelspec.description": description, "modelspec.trigger_phrase": prompt,
        "modelspec.usage_hint": f"recommended strength {strength:g}" if strength is not None else None,
    }
    meta.update({k: v for k, v in given.items() if v is not None})
    meta.setdefault("p2e.parents", "[]")
    meta.setdefault("modelspec.date", datetime.now(timezone.utc).date().isoformat())  # a conversion keeps it
    meta.setdefault("modelspec.title", prompt or (lora.path.stem if lora.path else "p2e LoRA"))
    meta.setdefault("modelspec.usage_hint", "recommended strength 1")
    meta.update({
        "format": "pt",
        "p2e.version": __version__,
        "p2e.rank": str(lora.rank),
        "p2e.alpha": f"{lora.alpha:g}",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{ARCHITECTURES.get(family, family)}/lora",
        "modelspec.implementation": IMPLEMENTATIONS[fmt],
        "ss_network_dim": str(lora.rank),
        "ss_network_alpha": f"{lora.alpha:g}",
        "ss_base_model_version": ARCHITECTURES.get(family, family).replace("-", "_"),
    })
    if tensors is not None:
        meta["modelspec.hash_sha256"] = _tensor_hash(tensors)
    if description is None:
        meta.setdefault("modelspec.description", f"p2e {kind or 'LoRA'}" + (f": {prompt}" if prompt else ""))
    if fmt == "diffusers" and lora.layers:
        meta[METADATA_KEY] = json.dumps({f"transformer.{k}": v for k, v in _peft_config(lora).items()},
                                        indent=2, sort_keys=True)
    return meta


def write_lora(path: Path | str, lora: LoraFile | Mapping[str, LoraLayer], *, fmt: str = "diffusers",
               diffs: Mapping[str, torch.Tensor] | None = None, **meta: Any) -> Path:
    """Write a LoRA atomically as safetensors in `fmt` (native: diffusers). `meta` goes to
    `lora_metadata` (kind, base, prompt, parents, title, description, strength)."""
    from safetensors.torch import save_file

    if not isinstance(lora, LoraFile):
        lora = LoraFile(dict(lora), dict(diffs or {}))
    if not lora.layers and not lora.diffs:
        raise P2EError("refusing to write an empty LoRA")
    path = check_output_path(path)
    if path.suffix != ".safetensors":
        raise P2EError(f"LoRA files are .safetensors, not {path.suffix or 'extensionless'}: {path}",
                       hint=f"name it {path.with_suffix('.safetensors').name}")
    tensors = to_state_dict(lora, fmt)
    for key, tensor in tensors.items():  # what read_lora refuses is never written
        if not bool(tensor.isfinite().all()):
            raise P2EError(f"{key}: NaN/Inf values; refusing to write {path.name}, which could not be read back",
                           hint="the weights or scales that made this LoRA are too large, or its training diverged")
    metadata = lora_metadata(lora, fmt, tensors=tensors, **meta)
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def convert_lora(source: Path | str, fmt: str, out: Path | str) -> Path:
    """Rewrite a LoRA file in another layout, keeping its metadata (refreshing hashes and the
    diffusers adapter config)."""
    lora = read_lora(source)
    return write_lora(out, lora, fmt=fmt)


def adapter_state_dict(lora: LoraFile) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(state dict for diffusers' load_lora_weights, diffs peft cannot express). alpha/rank is
    baked into B so the adapter loads at scale 1 with no metadata needed; a LoRA layer's bias delta
    rides as peft's lora_B.bias; full weight deltas and biases of un-adapted modules come back apart."""
    state: dict[str, torch.Tensor] = {}
    biased = _has_lora_bias(lora)
    for name, layer in lora.layers.items():
        state[f"transformer.{name}.lora_A.weight"] = layer.A.float()
        state[f"transformer.{name}.lora_B.weight"] = layer.B.float() * layer.scale
        if biased:
            state[f"transformer.{name}.lora_B.bias"] = _lora_bias(lora, name).float()
    rest = {n: d for n, d in lora.diffs.items() if not (n.endswith(".bias") and n[:-5] in lora.layers)}
    return state, rest


def lora_from_model(model: Any, adapter_name: str = "default") -> LoraFile:
    """The LoRA a peft adapter holds inside a model (e.g. one just trained), with alpha taken from
    the layer's own scaling (alpha = scaling · rank, so rsLoRA and patterns come out right)."""
    layers: dict[str, LoraLayer] = {}
    diffs: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or adapter_name not in lora_a:
            continue
        name = name.removeprefix("base_model.model.")
        a = lora_a[adapter_name].weight.detach().cpu().clone()
        b_layer = module.lora_B[adapter_name]
        scaling = float(module.scaling[adapter_name])
        layers[name] = LoraLayer(a, b_layer.weight.detach().cpu().clone(), scaling * a.shape[0])
        if getattr(b_layer, "bias", None) is not None and bool(b_layer.bias.any()):
            diffs[f"{name}.bias"] = b_layer.bias.detach().cpu() * scaling
    if not layers:
        raise P2EError(f"the model has no LoRA adapter named {adapter_name!r}")
    return LoraFile(layers, diffs)


def summary(lora: LoraFile) -> dict[str, Any]:
    """What `p2e lora inspect` shows (JSON-ready)."""
    types = Counter(module_type(n) or "other" for n in lora.layers)
    return {
        "path": str(lora.path) if lora.path else None,
        "format": lora.format,
        "layers": len(lora.layers),
        "ranks": lora.ranks,
        "alphas": lora.alphas,
        "rank": lora.rank,
        "alpha": lora.alpha,
        "module_types": dict(sorted(types.items())),
        "blocks": sorted({b for n in lora.layers if (b := block_of(n)) is not None}),
        "diffs": {n: list(d.shape) for n, d in sorted(lora.diffs.items())},
        "dtype": str(next(iter(lora.layers.values())).A.dtype).removeprefix("torch.") if lora.layers else None,
        "block_norms": block_norms(lora),
        "metadata": {k: v for k, v in lora.metadata.items() if k != METADATA_KEY},
    }
