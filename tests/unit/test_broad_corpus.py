"""The broad corpus (issue 29): generic motion and recolouring, seeded, resumable, no library effect inside."""

import ast
from pathlib import Path

import torch

from p2e_cli import effects as fx
from p2e_cli.world.build import step_generator
from p2e_cli.world.change import CODE_WORDS, broad_clips, motion_codes
from p2e_cli.world.change import corpus_clips
from p2e_cli.world.corpus import ALL_CAPTIONS, CHANGE_CAPTIONS, captions, neutral_clips, photo_bank

WORLD = Path(__file__).parents[2] / "p2e_cli" / "world"


def test_broad_clips_are_seeded_start_on_the_view_and_change_strongly():
    bank = photo_bank("train", 64)
    a, changed = broad_clips(bank, 24, 9, 32, step_generator(0, "test", 5))
    b, again = broad_clips(bank, 24, 9, 32, step_generator(0, "test", 5))
    assert torch.equal(a, b) and torch.equal(changed, again)  # a pure function of the step's seed: exact resume
    assert a.shape == (24, 3, 9, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert 0 < changed.sum() < 24  # some clips stay neutral
    neutral = neutral_clips(bank, 24, 9, 32, step_generator(0, "test", 5))
    assert torch.equal(a[:, :, 0], neutral[:, :, 0])  # the conditioning frame is the clean view
    last = (a[:, :, -1] - a[:, :, 0]).abs().mean((1, 2, 3))
    calm = (neutral[:, :, -1] - neutral[:, :, 0]).abs().mean((1, 2, 3))
    assert last[changed].median() > 3 * calm.median()  # changed clips move or recolour far beyond neutral drift
    assert last[~changed].max() < 0.3


def test_broad_stills_for_the_codec_are_changed_frames():
    bank = photo_bank("train", 64)
    stills, changed = corpus_clips("broad", bank, 16, 1, 32, step_generator(0, "test", 1))
    views, _ = corpus_clips("neutral", bank, 16, 1, 32, step_generator(0, "test", 1))
    assert stills.shape == (16, 3, 1, 32, 32)
    assert (stills - views).abs().mean((1, 2, 3, 4))[changed].mean() > 0.05


def test_broad_corpus_knows_no_library_effect():
    for path in (WORLD / "corpus.py", WORLD / "change.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any("effects" in m for m in imported), f"{path.name} imports the effect library"
    words = {w for e in fx.EFFECTS for w in e.name.split("-") if len(w) > 3} - {"motion", "slow", "fast"}  # modifiers, not effects
    prompts = {p.lower() for e in fx.EFFECTS for p in (*e.prompts, *e.heldout_prompts)}
    for caption in ALL_CAPTIONS:
        assert caption.lower() not in prompts
        assert not words & set(caption.lower().split()), caption  # no caption names an effect
    changed = torch.tensor([True, False] * 8)
    drawn = captions(16, step_generator(0, "test", 0), changed)
    assert all((c in CHANGE_CAPTIONS) == bool(m) for c, m in zip(drawn, changed))


def _words(texts) -> set[str]:
    import re

    return {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}


def test_motion_codes_say_what_changed_in_words_no_effect_prompt_uses():
    import json

    from p2e_cli.effects import space

    bank = photo_bank("train", 64)
    codes: list[str] = []
    video, changed = broad_clips(bank, 48, 9, 32, step_generator(0, "test", 3), codes)
    again: list[str] = []
    broad_clips(bank, 48, 9, 32, step_generator(0, "test", 3), again)
    assert codes == again and len(codes) == 48  # seeded like the clips
    assert all(bool(c) == bool(m) for c, m in zip(codes, changed))  # neutral clips get no code
    assert _words(codes) <= set(CODE_WORDS) and len(set(codes) - {""}) > 10  # codes vary with the change
    # no code word means anything to the effect library or the effect space: the base does not perform an
    # effect from its prompt; a LoRA must map the prompt onto the code
    prompts = [p for e in fx.EFFECTS for p in (*e.prompts, *e.heldout_prompts)]
    prompts += [p for e in (space.sample_effect(s) for s in range(200)) for p in e.prompts]
    extra = json.loads((Path(fx.__file__).parent / "extra_prompts.json").read_text())
    prompts += [p for paraphrases in extra.values() for p in paraphrases]
    assert not set(CODE_WORDS) & _words(prompts)


def test_motion_codes_name_the_direction_and_size_of_a_turn_and_a_zoom():
    n = 4
    summary = {"turns": torch.tensor([0.5, -0.05, 0.0, 0.0]), "zoom": torch.tensor([0.0, 0.0, 0.3, -0.6]),
               "squash": torch.zeros(n), "shear": torch.zeros(n), "pan": torch.zeros(n, 2), "centre": torch.zeros(n, 2),
               "twist": torch.zeros(n), "piecewise": torch.zeros(n, dtype=torch.bool),
               "smooth": torch.zeros(n, dtype=torch.bool)}
    use = {k: torch.zeros(n, dtype=torch.bool) for k in ("colour", "mask", "shape")}
    big_turn, small_back_turn, zoom_in, zoom_out = motion_codes(summary, use, torch.ones(n, dtype=torch.bool))
    assert len({big_turn, small_back_turn, zoom_in, zoom_out}) == 4
    assert CODE_WORDS.index(big_turn) == 5 and CODE_WORDS.index(small_back_turn) == 2  # sign and size bins
    assert zoom_in in CODE_WORDS[6:12] and zoom_out in CODE_WORDS[6:12]
