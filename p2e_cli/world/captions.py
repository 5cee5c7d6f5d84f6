"""Caption embeddings of a world build: MiniLM's, exactly as WanImageToVideoPipeline makes them, or read from a
caption file (`p2e world captions`) on a machine without the MiniLM package, such as a lent GPU.

The file is a safetensors with one tensor, "text" (captions, max_sequence_length, 384), and its captions as JSON
in the metadata ("captions"); the last caption is the empty prompt (caption dropout).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import P2EError
from ..hypernet.text import minilm_dir
from ..schemas import WorldRecipe
from .corpus import ALL_CAPTIONS


def encode_prompts(texts: list[str], max_sequence_length: int) -> torch.Tensor:
    """Prompt embeddings exactly as WanImageToVideoPipeline makes them (MiniLM, zero-padded)."""
    from ..encode import encode_texts
    from ..wan import quiet_libraries

    with quiet_libraries():  # no "Loading weights" bar or torchvision notice inside the build's own progress
        from diffusers import WanImageToVideoPipeline
        from transformers import BertModel, BertTokenizerFast

        pipe = WanImageToVideoPipeline(tokenizer=BertTokenizerFast.from_pretrained(minilm_dir()),
                                       text_encoder=BertModel.from_pretrained(minilm_dir()).eval(), vae=None,
                                       scheduler=None, transformer=None, expand_timesteps=True)
    return encode_texts(pipe, texts, max_sequence_length)


def read_caption_file(path: Path, recipe: WorldRecipe) -> tuple[list[str], torch.Tensor]:
    """A caption file of `p2e world captions` (captions, embeddings), checked against the recipe as far as it can
    be before the corpus is drawn: readable, the recipe's sequence length, every generic caption."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            known = json.loads((f.metadata() or {})["captions"])
            text = f.get_tensor("text")
    except Exception as exc:  # a missing, foreign or damaged file
        raise P2EError(f"--captions {path}: not a caption file of p2e world captions ({exc})",
                       hint=f"write one with p2e world captions RECIPE -o {path.name}") from exc
    if text.shape[1] != recipe.max_sequence_length:
        raise P2EError(f"--captions {path}: sequence length {text.shape[1]}, the recipe's max_sequence_length is "
                       f"{recipe.max_sequence_length}", hint="write it with p2e world captions and the build's recipe")
    check_captions(path, known, [*ALL_CAPTIONS, ""])
    return known, text


def check_captions(path: Path, known: list[str], texts: list[str]) -> None:
    missing = [t for t in texts if t not in known]
    if missing:
        raise P2EError(f"--captions {path} does not fit this recipe: {len(missing)} caption(s) missing, "
                       f"e.g. {missing[0]!r}",
                       hint="write it with p2e world captions and the same recipe and --set options as the build")


def caption_embeddings(texts: list[str], recipe: WorldRecipe, captions: tuple[Path, list[str], torch.Tensor] | None
                       ) -> torch.Tensor:
    """Embeddings of `texts`: from MiniLM, or looked up in a caption file (path, its captions, its embeddings)."""
    if captions is None:
        return encode_prompts(texts, recipe.max_sequence_length)
    path, known, text = captions
    check_captions(path, known, texts)
    return text[[known.index(t) for t in texts]].float()
