"""The hypernetwork's light BERT path gives transformers' BertModel numbers for MiniLM."""

import torch

from p2e_cli.hypernet.text import TextEncoder, encoder_dir


def test_light_minilm_matches_transformers():
    from transformers import AutoModel, AutoTokenizer

    texts = ["melting into liquid", "a slow clockwise spin of the whole picture, then fading out to black", "x"]
    light = TextEncoder("minilm")
    assert light.bert is not None and light.dim == 384
    embeds, mask = light(texts)
    folder = encoder_dir("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        reference = model(**batch).last_hidden_state
    assert torch.equal(mask, batch["attention_mask"].bool())
    torch.testing.assert_close(embeds[mask], reference[mask], atol=2e-5, rtol=1e-4)
    sims = light.sentence(["melting into liquid", "turning into liquid and dripping", "spinning clockwise"])
    assert sims[0] @ sims[1] > sims[0] @ sims[2]  # the sentence space makes sense
