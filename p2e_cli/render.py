"""Rendering: a Wan image-to-video clip from a base, an image and LoRAs applied as peft adapters.

LoRAs go through diffusers' own `load_lora_weights` (one adapter per LoRA and expert) and
`set_adapters` with their scales; nothing is merged into the weights. The only exception is what
peft cannot express (full `.diff` weight deltas, norm or bias deltas of un-adapted modules): those
are added to the parameters for the duration of one render and restored bit-exactly after.
A `Renderer` loads the pipeline once and keeps adapters loaded, so compare sheets, batches and
benchmarks pay for loading once. Same base, inputs and seed -> the same frames.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from . import console
from .errors import P2EError
from .files import sha256_file
from .lora_io import LoraFile, adapter_state_dict, fit_to_base, read_lora
from .wan import base_path, base_settings, load_pipeline, parameter_shapes

if TYPE_CHECKING:
    from .registry import Record, Registry

EXPERT_CHOICES = {"high": ("transformer",), "low": ("transformer_2",), "both": ("transformer", "transformer_2")}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class LoraSpec:
    """One --lora argument: FILE[:SCALE][@high|@low|@both] (the expert matters on Wan2.2 A14B only)."""

    source: str
    scale: float = 1.0
    expert: str = "both"


def parse_lora_spec(text: str) -> LoraSpec:
    """'melt.safetensors', 'melt.safetensors:0.8', 'lora:melt:0.5@low'. A ':' tail counts as the
    scale only when it is a number, so paths and KIND:NAME ids keep their colons."""
    source, expert = text, "both"
    head, at, tail = text.rpartition("@")
    if at and tail in EXPERT_CHOICES:
        source, expert = head, tail
    scale = 1.0
    head, colon, tail = source.rpartition(":")
    if colon and head:
        try:
            scale = float(tail)
            source = head
        except ValueError:
            pass
    if not source:
        raise P2EError(f"empty LoRA in --lora {text!r}", hint="use FILE[:SCALE], e.g. --lora melt.safetensors:0.8")
    if not np.isfinite(scale):
        raise P2EError(f"LoRA scale in {text!r} is not a finite number")
    return LoraSpec(source, scale, expert)


@dataclass
class ResolvedLora:
    spec: LoraSpec
    path: Path
    sha256: str
    lora: LoraFile
    record: Record | None = None

    @property
    def label(self) -> str:
        """What a sheet row or log line calls it: the registry name, else the effect and id of a
        registry LoRA (its file is named by content hash), else the file's stem."""
        if self.record is not None:
            effect = self.record.data.get("effect")
            name = self.record.name or (f"{effect} {self.record.id}" if effect else self.record.id)
        else:
            name = self.path.stem
        return f"{name}:{self.spec.scale:g}"

    def to_json(self) -> dict[str, Any]:
        return {"source": self.spec.source, "path": str(self.path), "sha256": self.sha256, "scale": self.spec.scale,
                "expert": self.spec.expert, "record": self.record.id if self.record is not None else None}


def resolve_lora(spec: LoraSpec | str, reg: Registry | None = None,
                 base: Record | Callable[[], Record] | None = None) -> ResolvedLora:
    """A --lora argument as a read LoRA: an existing file path, else a registry LoRA id or name,
    else (with `base`) a library effect's name: its newest reference LoRA on that base. `base` may
    be a function, called only when the name is looked up (resolving a default base registers it)."""
    if isinstance(spec, str):
        spec = parse_lora_spec(spec)
    path = Path(spec.source).expanduser()
    record = None
    if not path.exists():
        if reg is None:
            from .registry import open_registry

            reg = open_registry()
        try:
            record = reg.get(spec.source, kind="lora")
        except P2EError as e:
            from .catalog import effect_reference

            base = base() if callable(base) else base
            record = effect_reference(reg, base, spec.source) if base is not None else None
            if record is None:
                raise P2EError(f"LoRA {spec.source!r} is neither a file nor a LoRA in the registry"
                               + (f", nor an effect with a reference LoRA on base {base.name or base.id}" if base else ""),
                               hint="give a .safetensors path, a registry id or an effect name (e.g. melt); "
                                    "list them with `p2e ls lora`") from e
        if "lora" not in record.files:
            raise P2EError(f"registry {record.label} has no LoRA file")
        path = reg.path(record.files["lora"])
    lora = read_lora(path)
    return ResolvedLora(spec, path, sha256_file(path), lora, record)


def check_prompt(text: str, option: str = "--prompt") -> str:
    """A prompt from the command line, as text. Bytes that are not UTF-8 reach Python as lone
    surrogates (surrogateescape); p2e cannot know what they meant, so it refuses them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise P2EError(f"{option} is not valid UTF-8 text",
                       hint="use a UTF-8 terminal (e.g. LANG=C.UTF-8), or re-encode the prompt as UTF-8") from None
    return text


def lora_prompt(loras: Sequence[ResolvedLora]) -> str:
    """The effect prompts the LoRAs carry (p2e.prompt, else ModelSpec's trigger phrase), joined."""
    prompts = [l.lora.p2e("prompt") or l.lora.metadata.get("modelspec.trigger_phrase") for l in loras]
    return ", ".join(dict.fromkeys(p for p in prompts if p))


def prepare_image(image: Any, size: tuple[int, int]):
    """An input image (path, (H, W, 3) array or PIL image) centre-cropped to the aspect of `size`
    (width, height) and resized to it, as a PIL image."""
    from PIL import Image

    from .video import read_image

    if isinstance(image, (str, Path)):
        image = read_image(image)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    image = image.convert("RGB")
    width, height = size
    scale = max(width / image.width, height / image.height)
    crop_w, crop_h = round(width / scale), round(height / scale)
    left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
    return image.resize((width, height), Image.LANCZOS, box=(left, top, left + crop_w, top + crop_h))


# Attention cost grows with the square of the token count: a side beyond 4x the base's native one is
# 256x its attention work per frame (--size 20000x20000 on tiny ran for minutes before this bound).
MAX_SIZE_SCALE = 4


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise P2EError(f"bad --size {text!r}", hint="use WIDTHxHEIGHT, e.g. --size 832x480") from None
    return width, height


@dataclass
class RenderParams:
    prompt: str = ""
    frames: int | None = None
    steps: int | None = None
    seed: int = 0
    size: tuple[int, int] | None = None
    guidance: float | None = None
    negative_prompt: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "frames": self.frames, "steps": self.steps, "seed": self.seed,
                "size": list(self.size) if self.size else None, "guidance": self.guidance,
                "negative_prompt": self.negative_prompt}


def resolve_device(name: str | None) -> str:
    """A torch device name: the given one (checked), else cuda when available, else cpu."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise P2EError(f"unknown device {name!r}", hint="e.g. --device cpu or --device cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise P2EError(f"--device {name}: no CUDA GPU is available", hint="use --device cpu")
    return name


DTYPES = ("float32", "bfloat16", "float16")


def parse_dtype(name: str | None) -> Any:
    import torch

    if name is None:
        return None
    if name not in DTYPES:
        raise P2EError(f"unknown dtype {name!r}", hint=f"one of: {', '.join(DTYPES)}")
    return getattr(torch, name)


class Renderer:
    """One loaded base pipeline that renders clips with any set of LoRAs."""

    def __init__(self, base: Record | Path | str, dtype: Any = None, device: str | None = None, pipe: Any = None):
        """`pipe`: an already loaded pipeline of this base to render with (e.g. a training one)."""
        self.base = base
        self.path = base_path(base)
        self.name = getattr(base, "name", None) or str(self.path)
        self.settings = base_settings(base)
        self.device = resolve_device(device) if pipe is None else str(pipe.device)
        if pipe is None:
            console.info(f"loading base {self.name} from {self.path} on {self.device}")
        self.pipe = pipe if pipe is not None else load_pipeline(base, dtype, self.device)
        if self.settings.get("flow_shift") is not None:
            self.pipe.scheduler = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config,
                                                                       flow_shift=self.settings["flow_shift"])
        self.experts = [c for c in ("transformer", "transformer_2") if getattr(self.pipe, c, None) is not None]
        self._shapes: dict[str, dict[str, tuple[int, ...]]] = {}
        self._adapters: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._loaded = 0  # adapters ever loaded: names stay unique after unload

    def shapes(self, expert: str) -> dict[str, tuple[int, ...]]:
        if expert not in self._shapes:
            self._shapes[expert] = parameter_shapes(getattr(self.pipe, expert))
        return self._shapes[expert]

    def resolve_params(self, params: RenderParams) -> RenderParams:
        """Fill defaults from the base's settings and check them (4k+1 frames, sizes the VAE and
        patching divide)."""
        s = self.settings
        frames = params.frames if params.frames is not None else s["frames"]
        steps = params.steps if params.steps is not None else s["steps"]
        size = tuple(params.size) if params.size is not None else tuple(s["size"])
        guidance = params.guidance if params.guidance is not None else s["guidance"]
        temporal = self.pipe.vae_scale_factor_temporal
        if frames < 1 or (frames - 1) % temporal:
            raise P2EError(f"--frames {frames} is not {temporal}k+1",
                           hint=f"Wan renders {temporal}k+1 frames, e.g. {temporal + 1}, {2 * temporal + 1}, {4 * temporal + 1}")
        if steps < 1:
            raise P2EError(f"--steps must be at least 1, got {steps}")
        if guidance < 0 or not np.isfinite(guidance):
            raise P2EError(f"--guidance must be a number >= 0, got {guidance}")
        multiple = int(np.lcm(16, self.pipe.vae_scale_factor_spatial * self.pipe.transformer.config.patch_size[1]))
        if len(size) != 2 or min(size) < multiple or any(v % multiple for v in size):
            raise P2EError(f"--size {'x'.join(map(str, size))}: width and height must be multiples of {multiple}",
                           hint=f"e.g. --size {s['size'][0]}x{s['size'][1]}")
        limit = [MAX_SIZE_SCALE * v for v in s["size"]]
        if size[0] > limit[0] or size[1] > limit[1]:
            raise P2EError(f"--size {size[0]}x{size[1]} is beyond what this base renders: at most {limit[0]}x{limit[1]} "
                           f"({MAX_SIZE_SCALE}x its native {s['size'][0]}x{s['size'][1]} per side)",
                           hint=f"render at --size {s['size'][0]}x{s['size'][1]} and upscale the video afterwards")
        if not 0 <= params.seed < 2**63:
            raise P2EError(f"--seed must be between 0 and 2^63-1, got {params.seed}")
        return RenderParams(params.prompt, frames, steps, params.seed, (int(size[0]), int(size[1])), float(guidance),
                            params.negative_prompt)

    def targets(self, spec: LoraSpec) -> tuple[str, ...]:
        """The experts a LoRA goes into: both halves of a Wan2.2 A14B unless @high/@low says."""
        wanted = EXPERT_CHOICES[spec.expert]
        chosen = tuple(e for e in wanted if e in self.experts)
        if not chosen:
            raise P2EError(f"--lora {spec.source}@{spec.expert}: base {self.name} has no low-noise expert (transformer_2)",
                           hint="drop the @low suffix; this base has a single transformer")
        return chosen

    def check(self, lora: ResolvedLora) -> list[str]:
        """Validate a LoRA against this base (P2EError naming the keys); returns layers skipped."""
        skipped: list[str] = []
        for expert in self.targets(lora.spec):
            _, skipped = fit_to_base(lora.lora, self.shapes(expert), what=f"base {self.name}")
        return skipped

    def _adapter(self, lora: ResolvedLora, expert: str) -> tuple[str, dict[str, Any]]:
        """Load a LoRA into one expert once (keyed by file hash); return (adapter name or '' when it
        has no factors, the deltas peft cannot hold)."""
        key = (lora.sha256, expert)
        if key not in self._adapters:
            fitted, skipped = fit_to_base(lora.lora, self.shapes(expert), what=f"base {self.name}")
            if skipped:
                console.warn(f"{lora.path.name}: base {self.name} has no image projections; skipped "
                             f"{len(skipped)} layer(s): {', '.join(skipped[:4])}{' ...' if len(skipped) > 4 else ''}")
            state, rest = adapter_state_dict(fitted)
            name = f"p2e_{self._loaded}"
            self._loaded += 1
            if state:
                with warnings.catch_warnings():  # peft warns on every adapter after the first; several is the point
                    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                    self.pipe.load_lora_weights(state, adapter_name=name, load_into_transformer_2=expert == "transformer_2")
            self._adapters[key] = (name if state else "", rest)
        return self._adapters[key]

    def unload(self, lora: ResolvedLora) -> None:
        """Remove a LoRA's adapters from the pipeline. A long-lived renderer (p2e app's) would
        otherwise keep every LoRA it ever rendered in memory and in each layer's adapter list."""
        for expert in self.experts:
            name, _ = self._adapters.pop((lora.sha256, expert), ("", {}))
            if name:
                with warnings.catch_warnings():  # peft says which adapter it activates instead; render() sets them
                    warnings.filterwarnings("ignore", message=".*was active which is now deleted")
                    getattr(self.pipe, expert).delete_adapters(name)

    def render(self, image: Any, loras: Sequence[ResolvedLora] = (), params: RenderParams | None = None) -> np.ndarray:
        """Render one clip: (T, H, W, 3) uint8."""
        import torch

        params = self.resolve_params(params or RenderParams())
        active: dict[str, dict[str, float]] = {e: {} for e in self.experts}  # expert -> adapter -> weight
        hand: list[tuple[str, dict[str, Any], float]] = []
        for lora in loras:
            for expert in self.targets(lora.spec):
                name, rest = self._adapter(lora, expert)
                if name:  # the same file twice adds its scales
                    active[expert][name] = active[expert].get(name, 0.0) + lora.spec.scale
                if rest:
                    hand.append((expert, rest, lora.spec.scale))
        for expert, weights in active.items():
            model = getattr(self.pipe, expert)
            if weights:
                model.enable_lora()
                model.set_adapters(list(weights), list(weights.values()))
            elif getattr(model, "_hf_peft_config_loaded", False):
                model.disable_lora()
        width, height = params.size
        picture = prepare_image(image, (width, height))
        with console.progress("rendering", total=params.steps) as advance, _added_deltas(self.pipe, hand):
            def step(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                advance()
                return {}

            output = self.pipe(
                image=picture, prompt=params.prompt, negative_prompt=params.negative_prompt, height=height, width=width,
                num_frames=params.frames, num_inference_steps=params.steps, guidance_scale=params.guidance,
                max_sequence_length=self.settings["max_sequence_length"], output_type="np",
                generator=torch.Generator("cpu").manual_seed(params.seed), callback_on_step_end=step,
            ).frames
        from .video import as_frames

        return as_frames(np.asarray(output[0]))


def _parameter(model: Any, name: str) -> Any:
    """A parameter by its plain path, also when peft wrapped its module (module.base_layer)."""
    module_path, _, param = name.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    return getattr(getattr(module, "base_layer", module), param)


@contextmanager
def _added_deltas(pipe: Any, items: list[tuple[str, dict[str, Any], float]]) -> Iterator[None]:
    """Add full deltas (scale · diff) to parameters for one render, then restore the originals exactly."""
    import torch

    saved: dict[tuple[str, str], torch.Tensor] = {}
    try:
        with torch.no_grad():
            for expert, diffs, scale in items:
                model = getattr(pipe, expert)
                for name, diff in diffs.items():
                    parameter = _parameter(model, name)
                    saved.setdefault((expert, name), parameter.detach().clone())
                    parameter.add_(scale * diff.to(parameter.device, parameter.dtype))
        yield
    finally:
        with torch.no_grad():
            for (expert, name), original in saved.items():
                _parameter(getattr(pipe, expert), name).copy_(original)


def render(base: Record | Path | str, image: Any, loras: Sequence[tuple[Any, float]] = (), prompt: str = "",
           frames: int | None = None, steps: int | None = None, seed: int = 0, size: tuple[int, int] | None = None,
           guidance: float | None = None) -> np.ndarray:
    """Render one clip, (T, H, W, 3) uint8. `loras` are (path or registry record/id, scale) pairs;
    unset parameters come from the base's p2e_base.json. Deterministic for a given seed."""
    renderer = Renderer(base)
    resolved = []
    for source, scale in loras:
        if hasattr(source, "files"):  # a registry record
            source = source.id
        resolved.append(resolve_lora(LoraSpec(str(source), float(scale))))
    return renderer.render(image, resolved, RenderParams(prompt, frames, steps, seed, size, guidance))


# -- recording and side outputs ----------------------------------------------------------------


def image_paths(folder: Path) -> list[Path]:
    """The images of a --batch folder, sorted by name."""
    if not folder.is_dir():
        raise P2EError(f"--batch {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise P2EError(f"no images in {folder}", hint=f"--batch reads files ending in {', '.join(IMAGE_SUFFIXES)}")
    return paths


def preview_path(lora: ResolvedLora) -> Path | None:
    """Where a LoRA's sidecar preview goes: LORA.webp beside a LoRA file (not inside the registry store)."""
    return None if lora.record is not None else lora.path.with_suffix(".webp")


def write_preview(lora: ResolvedLora, frames: np.ndarray, fps: int, reg: Registry) -> str:
    """Write the animated .webp preview LoRA managers show: beside the file, or for a registry LoRA
    as its `preview` artifact. Returns where it went."""
    from .video import write_video

    target = preview_path(lora)
    if target is not None:
        write_video(frames, target, fps=fps)
        return str(target)
    with reg.artifact(".webp") as pending:
        write_video(frames, pending.path, fps=fps)
    assert pending.ref is not None and lora.record is not None
    reg.update(lora.record.id, files={"preview": pending.ref})
    return str(reg.path(pending.ref))


def record_render(reg: Registry, renderer: Renderer, image: Path, loras: Sequence[ResolvedLora], params: RenderParams,
                  output: Path, seconds: float, compare: bool = False) -> Record:
    """Register a render with its base, image, LoRAs and parameters (lineage: base and LoRA records)."""
    parents = [l.record.id for l in loras if l.record is not None]
    base_id = getattr(renderer.base, "id", None)
    if base_id:
        parents.append(base_id)
    data = {
        "base": renderer.name,
        "image": {"path": str(Path(image).resolve()), "sha256": sha256_file(image)},
        "loras": [l.to_json() for l in loras],
        **params.to_json(),
        "output": str(Path(output).resolve()),
        "compare": compare,
        "seconds": round(seconds, 3),
    }
    return reg.add("render", data=data, parents=list(dict.fromkeys(parents)))


@dataclass
class RenderJob:
    """One CLI render: an image to an output file, optionally a compare sheet of all variants."""

    image: Path
    output: Path
    loras: list[ResolvedLora] = field(default_factory=list)
    compare: bool = False

    def run(self, renderer: Renderer, params: RenderParams, fps: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Render and write; returns (main clip, clips per single LoRA when compare ran)."""
        from .video import contact_sheet, write_image, write_video

        if not self.compare:
            frames = renderer.render(self.image, self.loras, params)
            write_video(frames, self.output, fps=fps)
            return frames, {}
        rows, labels, singles = [renderer.render(self.image, [], params)], ["no LoRA"], {}
        for lora in self.loras:
            clip = renderer.render(self.image, [lora], params)
            rows.append(clip)
            labels.append(lora.label)
            singles[lora.sha256] = clip
        write_image(contact_sheet(rows, labels), self.output)
        return rows[-1], singles

