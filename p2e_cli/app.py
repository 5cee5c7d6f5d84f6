"""The local web page, `p2e app`: type an effect, watch it rendered, download the LoRA.

```
 browser / gradio_client
    │ prompt, image (upload or built-in photo), strength, seed, frames, steps
    ▼
 gradio Blocks ── queue: model jobs one at a time (concurrency id "model"), errors as gr.Error
    │   /generate   /render (a registry LoRA id)
    ▼
 App (one per process; base, hypernetwork and pipeline loaded once and kept)
    generate: check inputs ─► generation.generate_loras (registry: a predicted LoRA, like p2e generate)
    both:     Renderer: base clip (no LoRA) + LoRA clip, same seed ─► mp4s; LoRA in diffusers and
              ComfyUI / original-Wan layouts (lora_io)
    ▼
 session folder $P2E_HOME/app/session-PID/: gradio's upload and cache folder and the app's outputs,
 the only files the page serves; removed when the app stops
```

Safety: inputs are checked here, not trusted from the page. Images must lie in the session folder
(uploads land there; no server path is taken from the browser), at most 20 MB and 4096 px a side;
prompts are refused as the CLI refuses them, and over 500 characters or with control characters.
Nothing is fetched from the internet: gradio's analytics are off and its theme uses local fonts.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import console
from .errors import P2EError
from .generation import slug

if TYPE_CHECKING:
    from .registry import Record
    from .render import RenderParams, ResolvedLora

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_IMAGE_SIDE = 4096
MAX_PROMPT_CHARS = 500
MAX_STRENGTH = 2.0
DEFAULT_PHOTO = "coffee"
DISPLAY_SIDE = 256  # clips smaller than this are shown (and saved) upscaled, nearest neighbour
BASE_CLIPS_KEPT = 16
HISTORY_SHOWN = 100
EXAMPLE_FAMILIES = ("melt", "spin", "zoom", "hue", "invert", "explode", "freeze", "glitch", "pixelate", "ripple",
                    "swirl", "fade")

Progress = Callable[[float, str], None]


# -- input checks ----------------------------------------------------------------------------------


def check_app_prompt(text: Any) -> str:
    """An effect prompt from the page or the API, stripped. Refused as p2e generate refuses one
    (not UTF-8, empty), and also when over 500 characters or holding control characters."""
    from .render import check_prompt

    if not isinstance(text, str):
        raise P2EError("the prompt must be text")
    prompt = check_prompt(text, "the prompt").strip()
    if not prompt:
        raise P2EError("an empty prompt was given", hint="every prompt needs words describing the effect")
    control = sorted({c for c in prompt if unicodedata.category(c) == "Cc"})
    if control:
        raise P2EError(f"the prompt contains control characters ({', '.join(f'U+{ord(c):04X}' for c in control[:4])})",
                       hint="type the effect as plain text on one line")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise P2EError(f"prompt of {len(prompt)} characters is too long (at most {MAX_PROMPT_CHARS}): {prompt[:60]}...")
    return prompt


def check_upload(value: Any, folder: Path) -> Path | None:
    """The path of an uploaded image (a gradio file payload, or None for no image), refused unless
    it lies inside the session `folder`, is at most 20 MB and 4096 px a side, and decodes."""
    from PIL import Image

    from .video import read_image

    if value is None:
        return None
    raw = value.get("path") if isinstance(value, dict) else value
    if not isinstance(raw, str) or not raw:
        raise P2EError("the image must be an uploaded file", hint="upload a PNG or JPEG, or pick a built-in photo")
    path = Path(raw).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise P2EError("the image must be uploaded through the page, not named by a path on the server",
                       hint="upload a PNG or JPEG, or pick a built-in photo")
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise P2EError(f"the image is {size / 2**20:.1f} MB; the app takes images up to {MAX_UPLOAD_BYTES >> 20} MB",
                       hint="upload a smaller or more compressed image")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise P2EError("the upload is not an image p2e can read", hint="upload a PNG or JPEG") from None
    if max(width, height) > MAX_IMAGE_SIDE:
        raise P2EError(f"the image is {width}x{height} pixels; the app takes at most {MAX_IMAGE_SIDE} px a side",
                       hint="resize it first")
    read_image(path)  # decodes fully: a truncated or corrupt file is refused here, not mid-render
    return path


def check_number(value: Any, what: str, low: float, high: float, integer: bool = False) -> float:
    """A finite number in [low, high] (an integer when asked) from the page or the API."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise P2EError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high or (integer and not number.is_integer()):
        kind = "a whole number" if integer else "a number"
        raise P2EError(f"{what} must be {kind} from {low:g} to {high:g}, got {value!r}")
    return int(number) if integer else number


def example_prompts() -> list[str]:
    """One prompt from each of a few effect families of the library (those present)."""
    from .effects import effects, families

    present = set(families())
    return [effects(family=f)[0].prompts[0] for f in EXAMPLE_FAMILIES if f in present]


def display_frames(frames: np.ndarray) -> np.ndarray:
    """Frames upscaled by a whole factor (nearest neighbour) so the short side reaches DISPLAY_SIDE."""
    factor = max(1, math.ceil(DISPLAY_SIDE / min(frames.shape[1:3])))
    return frames.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else frames


# -- the app ---------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one /generate or /render call shows: two clips, the LoRA file and a summary."""

    lora_video: Path
    base_video: Path
    lora_file: Path
    summary: str
    lora_id: str


class App:
    """One base and hypernetwork with their loaded models, shared by every page and API call.

    Model work runs one job at a time under a lock (gradio's queue also keeps one in flight);
    each job opens its own registry connection, so calls from any thread are safe.
    """

    def __init__(self, base: str | None, hypernet: str | None, folder: Path):
        from .catalog import resolve_hypernet
        from .catalog import resolve_base
        from .wan import base_settings

        self.folder = folder
        self.base = resolve_base(base)
        with self.registry() as reg:
            self.hypernet_path, self.hypernet = resolve_hypernet(reg, hypernet, self.base)
        self.settings = base_settings(self.base)
        self.base_name = self.base.name or self.base.id
        self.hypernet_name = (self.hypernet.name or self.hypernet.id) if self.hypernet else self.hypernet_path.name
        self._lock = threading.Lock()
        self._generator: Any = None
        self._renderer: Any = None
        self._base_clips: OrderedDict[tuple, np.ndarray] = OrderedDict()

    # -- plumbing

    def registry(self) -> Any:
        """A registry connection for this thread, closed on leaving the `with`."""
        from contextlib import closing

        from .registry import open_registry

        return closing(open_registry())

    def job_folder(self) -> Path:
        path = self.folder / "jobs" / uuid.uuid4().hex[:12]
        path.mkdir(parents=True)
        return path

    def load(self) -> None:
        """Load the hypernetwork (with its W0 encoding and text encoder) and the render pipeline, once."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        if self._renderer is not None:
            return
        from .generation import open_generator
        from .render import Renderer

        start = time.perf_counter()
        with self.registry() as reg:
            generator = open_generator(reg, self.base, self.hypernet_path)
        generator.text  # the text encoder loads lazily; load it now
        self._renderer = Renderer(self.base)
        self._generator = generator
        seconds = time.perf_counter() - start
        console.info(f"app: base {self.base_name} and hypernetwork {self.hypernet_name} loaded in {seconds:.1f} s")

    def photo_file(self, name: str) -> Path:
        """A built-in photo (p2e_cli/photos.py) as a PNG in the session folder, at the base's
        render size upscaled to the display size."""
        from .photos import load_photo, photo_info
        from .video import write_image

        photo_info(name)  # an unknown name is a P2EError
        target = self.folder / "photos" / f"{name}.png"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            width, height = self.settings["size"]
            factor = max(1, math.ceil(DISPLAY_SIDE / min(width, height)))
            write_image(load_photo(name, (factor * height, factor * width)), target)
        return target

    def params(self, prompt: str, seed: Any, frames: Any, steps: Any) -> RenderParams:
        from .render import RenderParams

        frames = self.settings["frames"] if frames is None else check_number(frames, "frames", 1, 1024, integer=True)
        steps = self.settings["steps"] if steps is None else check_number(steps, "steps", 1, 200, integer=True)
        seed = check_number(0 if seed is None else seed, "seed", 0, 2**53, integer=True)
        return RenderParams(prompt, frames, steps, seed)

    def history(self) -> list[tuple[str, str]]:
        """(label, id) of this home's predicted LoRAs for this base, newest first."""
        with self.registry() as reg:
            records = [r for r in reg.ls("lora", subkind="predicted") if r.data.get("base") == self.base.id]
        records.sort(key=lambda r: r.created, reverse=True)
        return [(f"{r.created[:16].replace('T', ' ')} · {r.data.get('prompt', '')[:60]} · {r.id}", r.id)
                for r in records[:HISTORY_SHOWN]]

    # -- jobs

    def generate(self, prompt: Any, image: Any, strength: Any, seed: Any, frames: Any = None, steps: Any = None,
                 progress: Progress | None = None) -> Result:
        """Write a LoRA for `prompt` (recorded as predicted, as p2e generate does) and render it
        beside the base on `image` (None: the built-in photo) with the same seed."""
        from .generation import generate_loras

        prompt = check_app_prompt(prompt)
        picture = check_upload(image, self.folder)
        strength = check_number(strength, "strength", 0.0, MAX_STRENGTH)
        params = self.params(prompt, seed, frames, steps)
        step = progress or (lambda fraction, text: None)
        with self._lock:
            step(0.0, "loading the models")
            self._load()
            step(0.05, "writing the LoRA")
            start = time.perf_counter()
            with self.registry() as reg:
                [entry] = generate_loras(reg, self._generator, self.hypernet, [prompt])
                record = reg.get(entry["record"], kind="lora")
            seconds = time.perf_counter() - start
            return self._show(record, picture, strength, params, step, f"LoRA written in {seconds:.2f} s, ")

    def render(self, lora_id: Any, image: Any, strength: Any, seed: Any, frames: Any = None, steps: Any = None,
               progress: Progress | None = None) -> Result:
        """Render a registry LoRA (by id) beside the base on `image`, with its own prompt."""
        if not isinstance(lora_id, str) or not lora_id.strip():
            raise P2EError("no LoRA chosen", hint="pick one of this home's LoRAs from the history")
        picture = check_upload(image, self.folder)
        strength = check_number(strength, "strength", 0.0, MAX_STRENGTH)
        step = progress or (lambda fraction, text: None)
        with self.registry() as reg:
            record = reg.get(lora_id.strip(), kind="lora")
        if "lora" not in record.files:
            raise P2EError(f"registry {record.label} has no LoRA file")
        params = self.params(record.data.get("prompt") or record.data.get("effect") or "", seed, frames, steps)
        with self._lock:
            step(0.0, "loading the models")
            self._load()
            return self._show(record, picture, strength, params, step, "")

    def _show(self, record: Record, picture: Path | None, strength: float, params: RenderParams, step: Progress,
              timing: str) -> Result:
        """Render the base and the LoRA on the picture, write both clips and the LoRA files."""
        from .files import sha256_file
        from .video import write_video

        renderer = self._renderer
        params = renderer.resolve_params(params)
        lora = self._resolved(record, strength)
        renderer.check(lora)
        image = picture or self.photo_file(DEFAULT_PHOTO)
        start = time.perf_counter()
        clip_key = (sha256_file(image), params.prompt, params.seed, params.frames, params.steps, params.size)
        base_clip = self._base_clips.get(clip_key)
        if base_clip is None:
            step(0.1, f"rendering without the LoRA ({params.steps} steps)")
            base_clip = renderer.render(image, [], params)
            self._base_clips[clip_key] = base_clip
            while len(self._base_clips) > BASE_CLIPS_KEPT:
                self._base_clips.popitem(last=False)
        step(0.55, f"rendering with the LoRA ({params.steps} steps)")
        try:
            lora_clip = renderer.render(image, [lora], params)
        finally:
            renderer.unload(lora)
        seconds = time.perf_counter() - start
        step(0.95, "writing the videos")
        job = self.job_folder()
        name = slug(params.prompt)[:40]
        fps = self.settings["fps"]
        base_video = write_video(display_frames(base_clip), job / f"{name}_base.mp4", fps=fps)
        lora_video = write_video(display_frames(lora_clip), job / f"{name}_lora.mp4", fps=fps)
        lora_file = job / f"{name}-{record.id}.safetensors"
        shutil.copyfile(lora.path, lora_file)
        summary = self._summary(record, params, strength, f"{timing}rendered in {seconds:.1f} s")
        return Result(lora_video, base_video, lora_file, summary, record.id)

    def _resolved(self, record: Record, strength: float) -> ResolvedLora:
        """A registry LoRA as the renderer takes it; never a path from the caller."""
        from .lora_io import read_lora
        from .render import LoraSpec, ResolvedLora

        with self.registry() as reg:
            path = reg.path(record.files["lora"])
        return ResolvedLora(LoraSpec(record.id, strength), path, record.files["lora"].sha256, read_lora(path), record)

    def _summary(self, record: Record, params: RenderParams, strength: float, timing: str) -> str:
        data = record.data
        near = ", ".join(f"{n['effect']} {n['similarity']:.2f}" for n in data.get("nearest", []))
        norm = f", ‖ΔW‖ {data['norm']:.3g}" if "norm" in data else ""
        lines = [f"lora {record.id}: {params.prompt!r} ({record.subkind or 'lora'}, rank {data.get('rank', '?')}{norm})",
                 f"nearest library effects: {near or '(none: the hypernetwork has no library)'}",
                 f"{params.frames} frames {params.size[0]}x{params.size[1]}, {params.steps} steps, seed {params.seed}, "
                 f"strength {strength:g}; {timing}"]
        return "\n".join(lines)

    def export(self, lora_id: str) -> tuple[Path, Path]:
        """A registry LoRA copied into the session folder in diffusers layout and converted to the
        ComfyUI / original-Wan layout."""
        from .lora_io import convert_lora

        with self.registry() as reg:
            record = reg.get(lora_id, kind="lora")
            if "lora" not in record.files:
                raise P2EError(f"registry {record.label} has no LoRA file")
            source = reg.path(record.files["lora"])
        job = self.job_folder()
        name = f"{slug(record.data.get('prompt') or record.data.get('effect') or '')[:40]}-{record.id}"
        diffusers = job / f"{name}.safetensors"
        shutil.copyfile(source, diffusers)
        return diffusers, convert_lora(source, "comfyui", job / f"{name}_comfyui.safetensors")


# -- the page --------------------------------------------------------------------------------------


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a page handler; a P2EError (or an unexpected failure) becomes one gr.Error message."""
    import gradio as gr

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except P2EError as e:
            raise gr.Error(e.message + (f" (hint: {e.hint})" if e.hint else ""), title="p2e") from None
        except Exception as e:  # the server stays up; the page gets one line (--verbose: the log the traceback)
            if console.mode.verbose:
                console.err.print_exception()
            raise gr.Error(f"unexpected {type(e).__name__}: {e}", title="p2e") from None

    return run


CSS = """
#p2e-videos video { image-rendering: pixelated; }
"""


def build_page(app: App) -> Any:
    """The gradio Blocks page over `app`, with the API endpoints /generate and /render."""
    import gradio as gr

    from .photos import photo_names

    settings = app.settings
    max_frames = 4 * (settings["frames"] - 1) + 1

    def progress_of(progress: Any) -> Progress:
        return lambda fraction, text: progress(fraction, desc=text)

    @_friendly
    def generate(prompt: str, image: Any, strength: float, seed: int, frames: int, steps: int,
                 progress: gr.Progress = gr.Progress()) -> tuple[str, str, str, str, str]:
        r = app.generate(prompt, image, strength, seed, frames, steps, progress_of(progress))
        return str(r.lora_video), str(r.base_video), str(r.lora_file), r.summary, r.lora_id

    @_friendly
    def render(lora_id: str, image: Any, strength: float, seed: int, frames: int, steps: int,
               progress: gr.Progress = gr.Progress()) -> tuple[str, str, str, str, str]:
        r = app.render(lora_id, image, strength, seed, frames, steps, progress_of(progress))
        return str(r.lora_video), str(r.base_video), str(r.lora_file), r.summary, r.lora_id

    @_friendly
    def downloads(lora_id: str | None) -> tuple[Any, Any, Any]:
        """Both layouts of the chosen LoRA, and the history with it selected."""
        history = gr.Dropdown(choices=app.history(), value=lora_id or None)
        if not lora_id:
            return gr.DownloadButton(value=None), gr.DownloadButton(value=None), history
        diffusers, comfyui = app.export(lora_id)
        return gr.DownloadButton(value=str(diffusers)), gr.DownloadButton(value=str(comfyui)), history

    @_friendly
    def pick_photo(name: str) -> str:
        return str(app.photo_file(name))

    with gr.Blocks(title="p2e: effect LoRAs from a sentence", analytics_enabled=False) as page:
        gr.Markdown(f"## p2e: an effect LoRA from a sentence\nBase **{app.base_name}**, hypernetwork "
                    f"**{app.hypernet_name}**: the LoRA is written in one forward pass, then rendered here beside "
                    "the base (same seed).")
        lora_id = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="Effect prompt", placeholder="melting into liquid", max_length=MAX_PROMPT_CHARS,
                                    lines=1, elem_id="p2e-prompt")
                gr.Examples([[p] for p in example_prompts()], inputs=[prompt], label="Library prompts",
                            examples_per_page=len(EXAMPLE_FAMILIES))
                image = gr.Image(label="Input image (upload, or pick a built-in photo)", type="filepath",
                                 sources=["upload"], value=str(app.photo_file(DEFAULT_PHOTO)), height=224)
                photo = gr.Dropdown(choices=photo_names(), value=DEFAULT_PHOTO, label="Built-in photo")
                with gr.Row():
                    strength = gr.Slider(0.0, MAX_STRENGTH, value=1.0, step=0.05, label="Strength")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                with gr.Row():
                    frames = gr.Slider(1, max_frames, value=settings["frames"], step=4, label="Frames (4k+1)")
                    steps = gr.Slider(1, 50, value=settings["steps"], step=1, label="Steps")
                run = gr.Button("Generate", variant="primary", elem_id="p2e-generate")
            with gr.Column(scale=3):
                with gr.Row(elem_id="p2e-videos"):
                    base_video = gr.Video(label="Base, no LoRA", autoplay=True, loop=True, interactive=False,
                                          elem_id="p2e-base-video")
                    lora_video = gr.Video(label="With the LoRA", autoplay=True, loop=True, interactive=False,
                                          elem_id="p2e-lora-video")
                summary = gr.Textbox(label="Summary", lines=3, interactive=False, elem_id="p2e-summary")
                with gr.Row():
                    diffusers_file = gr.DownloadButton("LoRA (diffusers)", value=None, elem_id="p2e-download-diffusers")
                    comfyui_file = gr.DownloadButton("LoRA (ComfyUI / Wan)", value=None, elem_id="p2e-download-comfyui")
                with gr.Row():
                    history = gr.Dropdown(choices=app.history(), value=None, label="This home's predicted LoRAs",
                                          scale=3, elem_id="p2e-history")
                    rerender = gr.Button("Re-render", scale=1, elem_id="p2e-rerender")

        outputs = [lora_video, base_video, diffusers_file, summary, lora_id]
        common = dict(outputs=outputs, concurrency_id="model", concurrency_limit=1, preprocess=False)
        run.click(generate, inputs=[prompt, image, strength, seed, frames, steps], api_name="generate",
                  **common).success(downloads, inputs=[lora_id], outputs=[diffusers_file, comfyui_file, history],
                                 api_visibility="private")
        prompt.submit(generate, inputs=[prompt, image, strength, seed, frames, steps], api_visibility="private",
                      **common).success(downloads, inputs=[lora_id], outputs=[diffusers_file, comfyui_file, history],
                                     api_visibility="private")
        rerender.click(render, inputs=[history, image, strength, seed, frames, steps], api_name="render",
                       **common).success(downloads, inputs=[lora_id], outputs=[diffusers_file, comfyui_file, history],
                                      api_visibility="private")
        history.input(downloads, inputs=[history], outputs=[diffusers_file, comfyui_file, history],
                      api_visibility="private")
        photo.input(pick_photo, inputs=[photo], outputs=[image], api_visibility="private")
        page.load(lambda: gr.Dropdown(choices=app.history()), outputs=[history], api_visibility="private")
    return page


# -- serving ---------------------------------------------------------------------------------------


def session_folder() -> Path:
    """$P2E_HOME/app/session-PID, fresh; folders left by app processes no longer running are removed."""
    from .registry import open_registry

    reg = open_registry()
    try:
        root = reg.folder("app")
    finally:
        reg.close()
    for old in root.glob("session-*"):
        pid = old.name.removeprefix("session-")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    folder = root / f"session-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(base: str | None, hypernet: str | None, host: str, port: int) -> None:
    """Serve the page on host:port until interrupted (Ctrl-C or SIGTERM)."""
    import signal

    folder = session_folder()
    # before gradio and torch are imported: gradio's upload/cache folders, analytics, hub telemetry
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder / "examples")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # before torch loads OpenMP: idle threads sleep instead of spinning. The page shares the CPU with
    # a browser; with spinning threads a render on 2 busy cores took 33-53 s instead of 1.7 s
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C, so the folder is removed
    try:
        app = App(base, hypernet, folder)
        threading.Thread(target=app.load, name="p2e-app-load", daemon=True).start()
        page = build_page(app)
        page.queue(default_concurrency_limit=1, max_size=32)
        try:
            _, url, _ = page.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                                    max_file_size=MAX_UPLOAD_BYTES, ssr_mode=False, pwa=False, mcp_server=False,
                                    footer_links=["api"], css=CSS, show_error=False, allowed_paths=[])
        except OSError as e:
            raise P2EError(f"cannot serve on {host}:{port}: {e}", hint="pick another --port") from None
        console.info(f"p2e app: {url} (base {app.base_name}, hypernetwork {app.hypernet_name}); Ctrl-C stops it")
        page.block_thread()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
