"""The broad corpus (issue 29): generic motion and recolouring, seeded, resumable, no library effect inside."""

import ast
from pathlib import Path

import torch

from p2e_cli import effects as fx
from p2e_cli.world.build import step_generator
from p2e_cli.world.change import broad_clips
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
