"""p2e analyze: spectral analysis of bases and LoRAs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer

from .. import console
from ..errors import P2EError

if TYPE_CHECKING:
    from ..registry import Record, Registry

app = typer.Typer(name="analyze", help="Spectral analysis: the compressibility gap of W0 vs LoRA updates.",
                  no_args_is_help=True)


def library_loras(reg: Registry, base: Record) -> list[str]:
    """The newest reference LoRA of each effect the registry holds for a base, as registry ids."""
    from ..hypernet.library import newest_per_effect

    return [f"lora:{r.id}" for _, r in sorted(newest_per_effect(reg, "reference", base).items())]


def _print(report: dict[str, Any], output: Path | None) -> None:
    from rich.table import Table

    s = report["summary"]
    table = Table(title=f"energy captured by W0's top-k singular subspace — base {report['base']}, "
                        f"{report['n_layers']} layers, {len(report['loras'])} LoRA(s)")
    for column in ("k / n", "W0", "ΔW left", "ΔW right"):
        table.add_column(column, justify="right")
    for i, f in enumerate(s["fractions"]):
        if i % 2 == 0:
            table.add_row(f"{f:.2f}", f"{s['w0'][i]:.3f}", f"{s['delta_left'][i]:.3f}", f"{s['delta_right'][i]:.3f}")
    console.out.print(table)

    def k(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f}"

    console.out.print(f"90% of the energy at k/n = {k(s['w0_k90'])} for W0, {k(s['delta_left_k90'])} (left) / "
                      f"{k(s['delta_right_k90'])} (right) for ΔW")
    if output is not None:
        console.info(f"wrote {output}")


@app.command("spectrum")
def spectrum(base: Optional[str] = typer.Option(None, "--base", "-b", help="Base name or id (default: tiny)."),
             loras: List[str] = typer.Option([], "--loras", "-l", metavar="LORA",
                                             help="LoRA files or registry ids (repeat, or comma-separate). Default: "
                                                  "the registry's reference LoRAs for the base."),
             output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the figure to this .png."),
             expert: str = typer.Option("transformer", "--expert",
                                        help="Which transformer of a two-expert base (transformer or transformer_2)."),
             device: str = typer.Option("auto", "--device", help="Where W0's SVDs run: auto (cuda if present), cpu, cuda.")) -> None:
    """Energy of W0 and of ΔW in W0's top-k singular subspaces, per adapted layer, for k/n from 0 to 1.

    W0 keeps most energy in few directions; a LoRA's ΔW spreads over many (the paper's compressibility gap, the case for full-rank weight tokens). Left: ‖U_kᵀΔW‖²/‖ΔW‖²; right: ‖ΔW V_k‖²/‖ΔW‖²; curves are means over layers (and LoRAs), the JSON also has each layer.

    Example: p2e analyze spectrum --base tiny -o gap.png --json
    """
    from ..canon import base_weights, layer_spectrum, plot_spectrum, spectrum_summary
    from ..files import check_output_path
    from ..lora_io import fit_to_base
    from ..registry import open_registry
    from ..render import parse_lora_spec, resolve_lora
    from ..catalog import resolve_base
    from ..wan import EXPERTS, base_config, base_path, parameter_shapes

    if output is not None:
        check_output_path(output)
        if output.suffix.lower() != ".png":
            raise P2EError(f"the figure is a PNG, not {output.suffix or 'extensionless'}: {output}",
                           hint=f"name it {output.with_suffix('.png').name}")
    if expert not in EXPERTS:
        raise P2EError(f"unknown --expert {expert!r}", hint=f"one of: {', '.join(EXPERTS)}")
    device = _device(device)
    reg = open_registry()
    record = resolve_base(base)
    folder = base_path(record) / expert
    if not folder.is_dir():
        raise P2EError(f"base {record.name} has no {expert}", hint="use --expert transformer")
    texts = [t for item in loras for t in item.split(",") if t] or library_loras(reg, record)
    if not texts:
        raise P2EError(f"no LoRAs given and the registry has no reference LoRAs for base {record.name}",
                       hint="pass --loras FILE (repeatable), or train the reference library first")
    shapes = parameter_shapes(base_config(record, expert))
    resolved = [resolve_lora(parse_lora_spec(t), reg) for t in texts]
    fitted = [fit_to_base(r.lora, shapes, what=f"base {record.name}")[0] for r in resolved]
    names = list(dict.fromkeys(n for lora in fitted for n in lora.layers))
    layers = []
    weights = base_weights(folder, [f"{n}.weight" for n in names], device=device)
    for name, (_, W0) in console.track(zip(names, weights), "spectrum", total=len(names)):
        deltas = [(l.layers[name].B, l.layers[name].A, l.layers[name].scale) for l in fitted if name in l.layers]
        layer = layer_spectrum(name, W0, deltas)
        if layer is not None:
            layers.append(layer)
    summary = spectrum_summary(layers)
    report = {"base": record.name, "expert": expert, "loras": [r.to_json() for r in resolved], "n_layers": len(layers),
              "summary": summary, "layers": [layer.to_json() for layer in layers],
              "figure": str(output) if output is not None else None,
              "definitions": {"n": "min(out, in) of each layer", "w0": "Σ_{i<k} σ_i² / Σ σ_i² of W0",
                              "delta_left": "‖U_kᵀ ΔW‖² / ‖ΔW‖², U_k = W0's top-k left singular vectors",
                              "delta_right": "‖ΔW V_k‖² / ‖ΔW‖², V_k = W0's top-k right singular vectors"}}
    if output is not None:
        plot_spectrum(summary, output, title=f"compressibility gap — base {record.name}, {len(layers)} layers, "
                                             f"{len(resolved)} LoRA(s)")
    console.result(report, lambda: _print(report, output))


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice not in ("cpu", "cuda"):
        raise P2EError(f"unknown --device {choice!r}", hint="auto, cpu or cuda")
    if choice == "cuda" and not torch.cuda.is_available():
        raise P2EError("--device cuda, but no CUDA device is available", hint="use --device cpu")
    return choice
