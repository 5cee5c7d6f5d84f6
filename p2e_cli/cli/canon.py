"""p2e canon: rewrite LoRAs in SVD-canonical form."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from .. import console
from ..errors import P2EError

def _print(entries: list[dict[str, Any]]) -> None:
    if not entries:
        console.info("nothing to do: every reference LoRA already has a canonical form")
    for e in entries:
        where = ", ".join(x for x in (f"lora {e['name'] or e['record']}" if e["record"] else "",
                                      e["output"] or "") if x)
        if e["status"] == "exists":
            console.info(f"{e['source']}: already canonical -> {where}")
        else:
            console.info(f"{e['source']}: canonical -> {where} ({e['layers']} layers, rank {e['rank']})")


def canon(loras: Optional[List[str]] = typer.Argument(None, metavar="LORA",
                                                      help="LoRA .safetensors files or registry LoRA ids/names."),
          all_: bool = typer.Option(False, "--all", help="Every reference LoRA in the registry that has no canonical form yet."),
          output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                help="Output file (one LoRA only). Default: registry LoRAs stay in the "
                                                     "registry; a file F.safetensors gives F.canonical.safetensors.")) -> None:
    """Rewrite LoRAs in SVD-canonical form: ΔW = U S Vᵀ, B = U S^½, A = S^½ Vᵀ, alpha = rank, signs fixed.

    Registry LoRAs get a `canonical` child record (the source is its parent); running it again adds nothing; a LoRA already canonical comes back bit-identical. The math runs in float64 without forming ΔW; files are float32, so ΔW changes only by float32 rounding (~1e-7).

    --all also registers the reference library shipped with a world (tiny), the first time.

    Example: p2e canon --all
    """
    from ..lora_store import canonicalize_one, uncanonical_references
    from ..registry import open_registry
    from ..render import LoraSpec, parse_lora_spec, resolve_lora

    if not loras and not all_:
        raise P2EError("no LoRA given", hint="give LoRA files or registry ids, or --all for every reference LoRA")
    if loras and all_:
        raise P2EError("give LoRAs or --all, not both")
    reg = open_registry()
    if all_:
        from ..world.shipped import install_shipped

        if not reg.ls("base"):  # a fresh install: the default world (tiny) first, and with it its library
            install_shipped(reg)
        specs = [LoraSpec(f"lora:{r.id}") for r in uncanonical_references(reg)]
    else:
        specs = [parse_lora_spec(text) for text in loras]
    for spec in specs:
        if spec.scale != 1.0 or spec.expert != "both":
            raise P2EError(f"{spec.source}: canon takes no :SCALE or @expert suffix")
    if output is not None and len(specs) != 1:
        raise P2EError(f"-o names one output file, but {len(specs)} LoRAs were given", hint="drop -o, or canonicalize one LoRA")
    # one at a time: a 14B LoRA is ~1 GB in memory
    entries = [canonicalize_one(reg, resolve_lora(spec, reg), output) for spec in console.track(specs, "canonicalizing")]
    console.result(entries, lambda: _print(entries))


def register(app: typer.Typer) -> None:
    app.command("canon")(canon)
