"""Does a hypernetwork tell train effects apart from phrasings it never trained on?

    P2E_HOME=... python benchmarks/paraphrase_retrieval.py [--base tiny] [--hypernet ID ...] [--held-back 1]

For every train effect of the base's canonical library and three prompt sets -- its first training
paraphrase, its last training paraphrase (the one `validation_paraphrases=1` keeps out of training;
a network trained without that setting has seen it), and its first unseen paraphrase (the one `p2e eval run` scores) -- prints, per
hypernetwork, how often the predicted ΔW is nearest (ΔW NMSE) to the effect's own reference among
all train references, and the median NMSE to its own. Beside them, the text encoder alone: how often
the prompt's sentence embedding is nearest to its own effect's training paraphrases (nearest
single paraphrase, and nearest centroid of them, over the paraphrases before the held-back ones for
the held-back set). A network that generalizes across phrasings as well as its text encoder
separates them should come close to the centroid figure on the held-back and unseen sets.
"""

from __future__ import annotations

import argparse
import statistics as st

import torch


def text_accuracy(text, prompts: list[str], library: list[list[str]]) -> tuple[float, float]:
    """(nearest paraphrase, nearest centroid) accuracy of prompt i against library effect i."""
    q = text.sentence(prompts)
    per = [text.sentence(p) for p in library]
    nearest = torch.stack([(q @ p.T).amax(1) for p in per], 1)
    centroid = torch.stack([q @ torch.nn.functional.normalize(p.mean(0), dim=0) for p in per], 1)
    own = torch.arange(len(prompts))
    return tuple(float((s.argmax(1) == own).float().mean()) for s in (nearest, centroid))


def main() -> None:
    from p2e_cli.hypernet.library import canonical_library
    from p2e_cli.catalog import resolve_hypernet
    from p2e_cli.hypernet.store import Generator
    from p2e_cli.hypernet.text import TextEncoder
    from p2e_cli.hypernet.train import Targets
    from p2e_cli.metrics import delta_nmse, delta_retrieval_ranks
    from p2e_cli.registry import open_registry
    from p2e_cli.catalog import resolve_base

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="tiny")
    parser.add_argument("--hypernet", nargs="*", default=[None], help="registry ids/names or files (default: the base's newest)")
    parser.add_argument("--held-back", type=int, default=1)
    args = parser.parse_args()
    reg = open_registry()
    base = resolve_base(args.base)
    names, examples = canonical_library(reg, base, "raw")
    train = [e for e in examples if e.split == "train" and len(e.prompts) > args.held_back and e.unseen_prompts]
    n = args.held_back
    sets = {"training (first)": [e.prompts[0] for e in train], "held-back (last)": [e.prompts[-1] for e in train],
            "unseen (eval's)": [e.unseen_prompts[0] for e in train]}
    text = TextEncoder("minilm")
    print(f"{len(train)} train effects of base {base.name or base.id}")
    for label, library in (("held-back (last)", [e.prompts[:-n] for e in train]), ("unseen (eval's)", [e.prompts for e in train])):
        nearest, centroid = text_accuracy(text, sets[label], library)
        print(f"  MiniLM alone, {label}: nearest paraphrase {nearest:.2f}, nearest centroid {centroid:.2f}")
    targets = Targets(train)
    for ref in args.hypernet:
        path, _ = resolve_hypernet(reg, ref, base)
        generate = Generator(path, base)
        for label, prompts in sets.items():
            out = generate(prompts)
            pred = [(torch.stack([o[name][0] for o in out]), torch.stack([o[name][1] for o in out])) for name in names]
            ranks = delta_retrieval_ranks(pred, targets.layers)
            own = delta_nmse(pred, targets.layers)
            print(f"  {ref or path.name}, {label}: own effect nearest {float((ranks == 1).float().mean()):.2f}, "
                  f"in the top 5 {float((ranks <= 5).float().mean()):.2f}, own ΔW NMSE median {st.median(own.tolist()):.3f}")


if __name__ == "__main__":
    main()
