"""p2e curate: effect clips: synthesize, add real clips, encode latents."""

from __future__ import annotations

import typer

from .pending import placeholders

app = typer.Typer(name="curate", help="Effect clips: synthesize, add real clips, encode latents.", no_args_is_help=True)

placeholders(app, "the procedural effect library and curate (issue 5)", [
    ('synth', 'Render procedural effect clips into the registry.', 'p2e curate synth --split train --clips-per-effect 8'),
    ('add', 'Ingest real clips (video + same-name .txt caption).', 'p2e curate add ./melt_clips --effect melt'),
    ('ls', 'List curated clips.', 'p2e curate ls --effect melt'),
    ('rm', 'Remove clips.', 'p2e curate rm melt'),
    ('export', "Write an effect's clips in the Wan trainer layout.", 'p2e curate export melt -o ./melt_clips'),
    ('encode', 'Cache VAE latents and text embeddings of clips for a base.', 'p2e curate encode --base tiny'),
])
