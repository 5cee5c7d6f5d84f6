"""Wan bases: local diffusers I2V directories, their layer table, settings, and tiny test pipelines.

A base is a diffusers-format Wan image-to-video directory (`model_index.json` + components) that
loads with diffusers' own `WanImageToVideoPipeline`; p2e never re-implements the model. Two
families exist: `wan21` (Wan2.1 I2V: a CLIP image encoder, and `attn2.add_k_proj/add_v_proj` in
every block) and `wan22` (Wan2.2 I2V/TI2V: no image encoder; A14B has two experts, `transformer`
for high noise and `transformer_2` for low noise, with the same layer shapes).

The layer table is the one list of adaptable linear layers that training, canonicalization and
the hypernetwork share; it is pure arithmetic on the transformer config, so a 14B table costs
nothing. Heavy libraries are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from .errors import P2EError, P2ERuntimeError

if TYPE_CHECKING:
    import torch

    from .registry import Record

# module type -> path inside a `WanTransformerBlock`, in table order
MODULE_PATHS: dict[str, str] = {
    "self_q": "attn1.to_q",
    "self_k": "attn1.to_k",
    "self_v": "attn1.to_v",
    "self_o": "attn1.to_out.0",
    "cross_q": "attn2.to_q",
    "cross_k": "attn2.to_k",
    "cross_v": "attn2.to_v",
    "cross_o": "attn2.to_out.0",
    "add_k": "attn2.add_k_proj",
    "add_v": "attn2.add_v_proj",
    "ffn_in": "ffn.net.0.proj",
    "ffn_out": "ffn.net.2",
}
MODULE_TYPES = tuple(MODULE_PATHS)
IMAGE_TYPES = ("add_k", "add_v")  # only Wan2.1 I2V blocks have these
DEFAULT_TARGETS = tuple(t for t in MODULE_TYPES if t not in IMAGE_TYPES)
FAMILIES = ("wan21", "wan22")
EXPERTS = ("transformer", "transformer_2")
SETTINGS_FILE = "p2e_base.json"

# p2e's defaults for a base without p2e_base.json: the real Wan I2V 480p settings. Training and
# rendering must share max_sequence_length: the pipeline zero-pads text embeddings to it, and the
# padded tokens still take part in cross-attention.
REAL_WAN_SETTINGS: dict[str, Any] = {
    "max_sequence_length": 512, "frames": 81, "size": [832, 480], "steps": 40, "guidance": 5.0, "fps": 16,
}
SETTING_TYPES: dict[str, type] = {"max_sequence_length": int, "frames": int, "steps": int, "guidance": float,
                                  "fps": int, "flow_shift": float, "position_channels": int}


@dataclass(frozen=True)
class Layer:
    """One adaptable linear layer: `name` is its module path inside the transformer."""

    name: str
    module_type: str
    block: int
    out_features: int
    in_features: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _config_dict(transformer_or_config: Any) -> dict[str, Any]:
    """A transformer's config as a plain dict, from a model, a config mapping, or a config.json path."""
    if isinstance(transformer_or_config, (str, Path)):
        path = Path(transformer_or_config)
        path = path / "config.json" if path.is_dir() else path
        return _check_sizes(_read_json(path, "transformer config"), path)
    config = getattr(transformer_or_config, "config", transformer_or_config)
    if not isinstance(config, Mapping):
        raise TypeError(f"expected a WanTransformer3DModel or its config, got {type(transformer_or_config).__name__}")
    return dict(config)


# sizes a Wan transformer config may have (a 14B Wan: 40 layers, 40 heads x 128, ffn 13824)
CONFIG_LIMITS = {"num_layers": 1024, "num_attention_heads": 1024, "attention_head_dim": 4096, "ffn_dim": 1 << 20,
                 "in_channels": 4096, "out_channels": 4096, "text_dim": 1 << 16}


def _size(value: Any, limit: int) -> bool:
    """Whether `value` is an integer size in 1..limit (a bool or a float such as 1e9 is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit


def _check_sizes(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """Reject configs whose sizes are not positive integers in range (a hostile or broken config.json
    must fail with a message, not allocate or loop for hours)."""
    bad = [f"{key}={config[key]!r}" for key, limit in CONFIG_LIMITS.items() if key in config and not _size(config[key], limit)]
    if bad:
        raise P2EError(f"transformer config {path} has sizes out of range: {', '.join(bad)}",
                       hint="a Wan transformer config has positive integer sizes (e.g. num_layers 40)")
    return config


def check_targets(targets: Any) -> tuple[str, ...]:
    unknown = [t for t in targets if t not in MODULE_PATHS]
    if unknown or not targets:
        raise P2EError(f"unknown LoRA target module type(s): {', '.join(map(str, unknown)) or '(none given)'}",
                       hint=f"module types: {', '.join(MODULE_TYPES)}")
    return tuple(targets)


def layer_table(transformer_or_config: Any, targets: Any = DEFAULT_TARGETS) -> list[Layer]:
    """The adaptable linear layers of a Wan transformer, in a fixed order: block by block, and
    within a block in `MODULE_TYPES` order. Image projections (add_k/add_v) appear only when the
    transformer has them. Pure arithmetic on the config: no weights are needed."""
    config = _config_dict(transformer_or_config)
    wanted = set(check_targets(targets))
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    shapes = {
        **{t: (dim, dim) for t in ("self_q", "self_k", "self_v", "self_o", "cross_q", "cross_k", "cross_v", "cross_o")},
        "ffn_in": (config["ffn_dim"], dim),
        "ffn_out": (dim, config["ffn_dim"]),
    }
    if config.get("added_kv_proj_dim") is not None:
        shapes["add_k"] = shapes["add_v"] = (dim, config["added_kv_proj_dim"])
    return [Layer(f"blocks.{block}.{MODULE_PATHS[t]}", t, block, *shapes[t])
            for block in range(config["num_layers"]) for t in MODULE_TYPES if t in wanted and t in shapes]


def layer_table_hash(table: list[Layer]) -> str:
    """What makes LoRAs compatible with a base: sha256 (16 hex) of the names, types and shapes in order."""
    canonical = json.dumps([[l.name, l.module_type, l.out_features, l.in_features] for l in table], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parameter_shapes(transformer_or_config: Any) -> dict[str, tuple[int, ...]]:
    """Every parameter of the transformer with its shape, built on the meta device (no memory, no
    weights): validates LoRA layers and full/bias deltas outside the layer table (proj_out, norms, ...)."""
    import torch
    from diffusers import WanTransformer3DModel

    config = {k: v for k, v in _config_dict(transformer_or_config).items() if not k.startswith("_")}
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


# -- base directories --------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise P2EError(f"{what} {path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise P2EError(f"{what} {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise P2EError(f"{what} {path} is not a JSON object")
    return data


def _check_vae(vae: dict[str, Any], path: Path) -> dict[str, Any]:
    """The VAE config keys rendering relies on: z_dim a positive integer, latents_mean/latents_std one
    number per latent channel, scale factors positive integers (a mismatch failed late, as a reshape
    error inside p2e render)."""
    z_dim = vae.get("z_dim")
    bad = []
    if not _size(z_dim, 4096):
        bad.append(f"z_dim={z_dim!r} (a positive integer)")
    else:
        for key in ("latents_mean", "latents_std"):
            values = vae.get(key)
            if values is not None and not (isinstance(values, list) and len(values) == z_dim
                                           and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
                n = len(values) if isinstance(values, list) else type(values).__name__
                bad.append(f"{key} has {n} entries, z_dim is {z_dim}")
    for key in ("scale_factor_spatial", "scale_factor_temporal"):
        v = vae.get(key)
        if v is not None and not _size(v, 64):
            bad.append(f"{key}={v!r} (a positive integer)")
    if bad:
        raise P2EError(f"vae config {path} is inconsistent: {'; '.join(bad)}",
                       hint="latents_mean and latents_std need one number per latent channel (z_dim)")
    return vae


def check_base_dir(path: Path | str) -> dict[str, Any]:
    """Validate a diffusers Wan I2V directory; return its model_index. Every missing piece is
    named in one error."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise P2EError(f"base directory {path} does not exist or is not a directory",
                       hint="give a local diffusers-format Wan I2V folder (with model_index.json)")
    index_path = path / "model_index.json"
    if not index_path.is_file():
        raise P2EError(f"{path} is not a diffusers pipeline: model_index.json is missing",
                       hint="download or convert the model in diffusers format, e.g. Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    index = _read_json(index_path, "model_index.json")
    problems = []
    if index.get("_class_name") not in ("WanImageToVideoPipeline", None):
        problems.append(f"model_index.json names {index.get('_class_name')!r}, not WanImageToVideoPipeline")
    required = ["transformer", "vae", "text_encoder", "tokenizer", "scheduler"]
    for component in required:
        spec = index.get(component)
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0] is not None):
            problems.append(f"model_index.json lacks the {component} component")
        elif not (path / component).is_dir():
            problems.append(f"folder {component}/ is missing")
    for component in ("transformer", "vae", "text_encoder"):
        if (path / component).is_dir() and not (path / component / "config.json").is_file():
            problems.append(f"{component}/config.json is missing")
    if isinstance(index.get("transformer_2"), list) and index["transformer_2"][0] is not None \
            and not (path / "transformer_2" / "config.json").is_file():
        problems.append("transformer_2/config.json is missing")
    config_file = path / "transformer" / "config.json"
    if config_file.is_file() and _read_json(config_file, "transformer config").get("image_dim") is not None:
        for component in ("image_encoder", "image_processor"):  # Wan2.1 I2V conditions on CLIP features
            spec = index.get(component)
            if not (isinstance(spec, list) and spec[0] is not None and (path / component).is_dir()):
                problems.append(f"the transformer takes image features but the {component} component is missing")
    if problems:
        raise P2EError(f"{path} is not a complete Wan I2V base: " + "; ".join(problems),
                       hint="a base needs model_index.json and the transformer, vae, text_encoder, tokenizer and scheduler folders")
    return index


def describe_base(path: Path | str) -> dict[str, Any]:
    """What p2e records about a base: path, family, sizes, experts, layer-table hash and count, settings."""
    path = Path(path).expanduser().resolve()
    index = check_base_dir(path)
    config = _config_dict(path / "transformer")
    table = layer_table(config)
    experts = [e for e in EXPERTS if isinstance(index.get(e), list) and index[e][0] is not None]
    vae = _check_vae(_read_json(path / "vae" / "config.json", "vae config"), path / "vae" / "config.json")
    family = "wan21" if config.get("image_dim") is not None else "wan22"
    sizes = {
        "blocks": config["num_layers"],
        "dim": config["num_attention_heads"] * config["attention_head_dim"],
        "heads": config["num_attention_heads"],
        "ffn_dim": config["ffn_dim"],
        "text_dim": config["text_dim"],
        "image_dim": config.get("image_dim"),
        "in_channels": config["in_channels"],
        "patch_size": list(config["patch_size"]),
        "z_dim": vae.get("z_dim"),
        "vae_scale_spatial": vae.get("scale_factor_spatial"),
        "vae_scale_temporal": vae.get("scale_factor_temporal"),
    }
    return {
        "path": str(path),
        "family": family,
        "experts": experts,
        "text_encoder": index["text_encoder"][1],
        "sizes": sizes,
        "layer_table": layer_table_hash(table),
        "n_layers": len(table),
        "settings": read_settings(path),
    }


def read_settings(path: Path | str) -> dict[str, Any]:
    """A base directory's p2e_base.json over the real-Wan defaults, type-checked."""
    settings = dict(REAL_WAN_SETTINGS)
    file = Path(path) / SETTINGS_FILE
    if file.is_file():
        settings.update(_read_json(file, SETTINGS_FILE))
    for key, kind in SETTING_TYPES.items():
        if key in settings and not isinstance(settings[key], (int, float) if kind is float else int):
            raise P2EError(f"{file}: {key}: expected {kind.__name__}, got {settings[key]!r}")
    size = settings.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise P2EError(f"{file}: size: expected [width, height], got {size!r}")
    return settings


def base_path(base: Record | Path | str) -> Path:
    """The directory of a base given as a registry record or a directory path."""
    if isinstance(base, (str, Path)):
        return Path(base).expanduser()
    return Path(base.data["path"])


def base_settings(base: Record | Path | str) -> dict[str, Any]:
    """p2e's defaults for rendering and training on this base (max_sequence_length, frames, size,
    steps, guidance, fps, optional flow_shift), read from the base directory."""
    return read_settings(base_path(base))


def base_config(base: Record | Path | str, expert: str = "transformer") -> dict[str, Any]:
    """The transformer config of a base (for layer tables without loading weights)."""
    return _config_dict(base_path(base) / expert)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence diffusers/transformers progress bars, info logs and deprecation chatter: p2e
    reports progress itself, and its stderr should name files and ids, not library internals."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def load_pipeline(base: Record | Path | str, dtype: torch.dtype | None = None, device: str | None = None):
    """Load a base with diffusers' own WanImageToVideoPipeline, from local files only. Whatever
    model_index.json names is what loads (a MiniLM BertModel text encoder works as well as UMT5).
    `dtype` (default float32) applies to the transformers and text encoder; the VAE and the CLIP
    image encoder stay float32 in any case, as Wan's own examples load them. `device` e.g. "cuda"."""
    import torch

    path = base_path(base)
    check_base_dir(path)
    try:
        with quiet_libraries():
            from diffusers import WanImageToVideoPipeline  # its import is what warns about torchvision

            pipe = WanImageToVideoPipeline.from_pretrained(path, torch_dtype=dtype or torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise P2ERuntimeError(f"cannot load the Wan pipeline at {path}: {str(e).splitlines()[0]}",
                              hint="check the folder is a complete diffusers Wan I2V model") from e
    for component in (pipe.vae, pipe.image_encoder):
        if component is not None:
            component.to(torch.float32)
    fast_vae_norms(pipe.vae)
    if device is not None:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _rms_norm_forward(self, x: torch.Tensor) -> torch.Tensor:
    import torch

    x32 = x if x.dtype in (torch.float32, torch.float64) else x.float()
    squares = x32.square().sum(1 if self.channel_first else -1, keepdim=True)
    normalized = (x32 * torch.rsqrt(squares.clamp_min(1e-24))).to(x.dtype)  # F.normalize's eps 1e-12, squared
    return normalized * self.scale * self.gamma + self.bias


def fast_vae_norms(vae):
    """Give each RMS norm of a diffusers Wan VAE (WanRMS_norm) the same function computed faster:
    x * rsqrt(sum x^2) instead of F.normalize, whose reduction over the channel dimension is a
    slow strided kernel on CPU (2.5-3x the time, forward and backward). Same parameters, same
    state dict; the VAE's outputs agree to float32 rounding. Returns `vae`."""
    import types

    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    for module in vae.modules():
        if isinstance(module, WanRMS_norm):
            module.forward = types.MethodType(_rms_norm_forward, module)
    return vae


# -- tiny test pipelines -----------------------------------------------------------------------


def build_test_pipeline(directory: Path | str, family: str = "wan22", *, blocks: int = 2, heads: int = 2,
                        head_dim: int = 12, ffn_dim: int = 32, z_dim: int = 4, vae_base_dim: int = 8,
                        text_dim: int = 16, two_experts: bool = False, seed: int = 0,
                        settings: Mapping[str, Any] | None = None) -> Path:
    """Save a tiny, randomly initialised, shape-faithful Wan I2V pipeline of the real diffusers
    classes as a real diffusers directory, and return its path. `wan21` adds a CLIP image encoder
    and the blocks' add_k/add_v projections; `wan22` has none (`two_experts` adds transformer_2 with
    a boundary ratio, as Wan2.2 A14B). The VAE downsamples 4x in space and time, and its
    scale factors say so, or the pipeline would mis-size latents. Writes p2e_base.json too."""
    if family not in FAMILIES:
        raise P2EError(f"unknown Wan family {family!r}", hint=f"one of: {', '.join(FAMILIES)}")
    directory = Path(directory)
    with quiet_libraries():
        _build_test_pipeline(directory, family == "wan21", blocks, heads, head_dim, ffn_dim, z_dim, vae_base_dim,
                             text_dim, two_experts, seed)
    defaults = {"max_sequence_length": 16, "frames": 5, "size": [32, 32], "steps": 2, "guidance": 1.0, "fps": 8,
                **(settings or {})}
    (directory / SETTINGS_FILE).write_text(json.dumps(defaults, indent=2) + "\n", encoding="utf-8")
    return directory


def _build_test_pipeline(directory: Path, wan21: bool, blocks: int, heads: int, head_dim: int, ffn_dim: int,
                         z_dim: int, vae_base_dim: int, text_dim: int, two_experts: bool, seed: int) -> None:
    import torch

    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        pipe = _test_components(wan21, blocks, heads, head_dim, ffn_dim, z_dim, vae_base_dim, text_dim, two_experts)
    pipe.save_pretrained(directory)


def _test_components(wan21: bool, blocks: int, heads: int, head_dim: int, ffn_dim: int, z_dim: int, vae_base_dim: int,
                     text_dim: int, two_experts: bool) -> Any:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import BertConfig, BertModel, BertTokenizerFast, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from .hypernet.text import minilm_dir

    # dim_mult of length 3 = two spatial downsamples (4x); both temporal (4x), like Wan's VAE
    vae = AutoencoderKLWan(base_dim=vae_base_dim, z_dim=z_dim, dim_mult=[1, 2, 2], num_res_blocks=1,
                           temperal_downsample=[True, True], latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim,
                           scale_factor_spatial=4, scale_factor_temporal=4)
    tokenizer = BertTokenizerFast.from_pretrained(minilm_dir())
    text_encoder = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=text_dim, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=2 * text_dim,
                                        max_position_embeddings=64), add_pooling_layer=False)
    dim = heads * head_dim

    def transformer() -> WanTransformer3DModel:
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim,
            in_channels=2 * z_dim + 4, out_channels=z_dim, text_dim=text_dim, freq_dim=16, ffn_dim=ffn_dim,
            num_layers=blocks, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            image_dim=text_dim if wan21 else None, added_kv_proj_dim=dim if wan21 else None)

    image_encoder = image_processor = None
    if wan21:
        image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=text_dim, intermediate_size=2 * text_dim,
                                                         num_hidden_layers=2, num_attention_heads=2, image_size=16,
                                                         patch_size=8, projection_dim=text_dim))
        image_processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                        num_train_timesteps=1000)
    return WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
        image_processor=image_processor, image_encoder=image_encoder, transformer=transformer(),
        transformer_2=transformer() if two_experts else None, boundary_ratio=0.875 if two_experts else None)
