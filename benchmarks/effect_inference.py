"""How far can `p2e finetune --init LORA` trust a LoRA's prompt to name its effect? (catalog.INFER_SIMILARITY)

For every library effect, each of its unseen paraphrases (`heldout_prompts`, never a library prompt)
is matched to the nearest library prompt by MiniLM sentence cosine, as `catalog.infer_effect` does.
Prints top-1 accuracy and, for a range of thresholds, how many paraphrases would be inferred
(similarity >= t) and how many of those would be the wrong effect. Plus unrelated sentences, which
must fall below the threshold.

    python benchmarks/effect_inference.py
"""

from __future__ import annotations

UNRELATED = ["a cat sitting on a sofa", "quarterly revenue grew by four percent", "hello world",
             "the recipe needs two eggs", "my lora", "test", "final version 2", "a portrait of a woman"]


def main() -> None:
    import torch

    from p2e_cli import effects as fx
    from p2e_cli.catalog import INFER_SIMILARITY, library_prompts
    from p2e_cli.hypernet.text import TextEncoder

    names, prompts = library_prompts()
    enc = TextEncoder()
    library = enc.sentence(prompts)
    queries = [(e.name, p) for e in fx.EFFECTS for p in e.heldout_prompts]
    sims = enc.sentence([p for _, p in queries]) @ library.T
    value, index = sims.max(dim=1)
    right = torch.tensor([names[i] == name for (name, _), i in zip(queries, index.tolist())])
    print(f"{len(queries)} unseen paraphrases of {len(fx.EFFECTS)} effects: nearest library prompt is the right "
          f"effect for {right.float().mean():.1%}")
    noise = (enc.sentence(UNRELATED) @ library.T).max(dim=1).values
    print(f"unrelated sentences: max similarity {noise.max():.2f} (median {noise.median():.2f})")
    print("threshold  inferred  of which wrong  unrelated inferred")
    for t in (0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8):
        on = value >= t
        print(f"{t:9.2f}  {on.float().mean():8.1%}  {(on & ~right).sum():14d}  {(noise >= t).sum():18d}"
              + ("   <- catalog.INFER_SIMILARITY" if abs(t - INFER_SIMILARITY) < 1e-9 else ""))


if __name__ == "__main__":
    main()
