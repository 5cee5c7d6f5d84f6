"""p2e app: a local web page to type an effect, watch it rendered and download the LoRA.

(Named webapp.py: a module `app` would shadow the Typer `app` object of this package.)
"""

from __future__ import annotations

from typing import Optional

import typer

from .. import console
from ..errors import P2EError

INSTALL = 'pip install "p2e[app]"'


def app(base: Optional[str] = typer.Option(None, "--base", help="Base to generate and render on (default: the embedded tiny world)."),
        hypernet: Optional[str] = typer.Option(None, "--hypernet", help="Hypernetwork: registry id/name or .safetensors "
                                                                         "file (default: the newest one for the base)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The default serves this machine only; "
                                                              "0.0.0.0 or a network address exposes the page to everyone "
                                                              "who can reach it: with no login they can generate and "
                                                              "render (using this machine's CPU/GPU), list this home's "
                                                              "predicted LoRAs and download them."),
        port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to listen on.")) -> None:
    """Serve a local web page: type an effect, see it rendered beside the base, download the LoRA.

    Generate writes the LoRA as `p2e generate` does (recorded as a predicted LoRA), renders the base
    and the LoRA side by side with the same seed, and offers the file in diffusers and ComfyUI /
    original-Wan layouts. Needs gradio, the optional app extra of p2e. API: /generate, /render.

    Example: p2e app   (then open http://127.0.0.1:7860)
    """
    from importlib.util import find_spec

    if find_spec("gradio") is None:
        raise P2EError("p2e app needs gradio, which is not installed", hint=INSTALL)
    from ..app import serve

    console.info(f"p2e app: loading base {base or 'tiny'} ...")
    serve(base, hypernet, host, port)


def register(typer_app: typer.Typer) -> None:
    typer_app.command("app")(app)
