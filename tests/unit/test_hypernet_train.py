"""Hypernetwork training on a micro world's canonical library (imported random teachers, so the
test needs no LoRA training): exact resume, every ablation switch trains, the loss math."""

import dataclasses
import json

import pytest
import torch

from p2e_cli.canon import base_weights
from p2e_cli.hypernet.library import canonical_library
from p2e_cli.hypernet.store import Generator, load_hypernet
from p2e_cli.hypernet.text import TextEncoder
from p2e_cli.hypernet.train import Targets, train_hypernet
from p2e_cli.metrics import delta_nmse, frob2_of_product_difference
from p2e_cli.lora_io import LoraLayer, write_lora
from p2e_cli.recipes import load_recipe
from p2e_cli.registry import open_registry
from p2e_cli.wan import base_config, base_path, layer_table

OVERRIDES = ["base=micro", "steps=6", "batch_size=4", "eval_every=3", "checkpoint_every=3", "model.dim=16",
             "model.heads=2", "model.queries=8", "model.fusion_layers=1", "model.feature_dim=16", "model.head_dim=32",
             "optim.lr=3e-3", "optim.warmup_steps=0", "flow.steps=0"]


@pytest.fixture
def library(cli, micro_base, tmp_path):
    table = layer_table(base_config(micro_base))
    for k, effect in enumerate(["melt", "invert", "hue-orange"]):
        g = torch.Generator().manual_seed(k)
        layers = {l.name: LoraLayer(torch.randn(2, l.in_features, generator=g), torch.randn(l.out_features, 2, generator=g) * 0.1, 4.0)
                  for l in table}
        path = write_lora(tmp_path / f"{effect}.safetensors", layers)
        assert cli("lora", "import", path, "--name", effect, "--effect", effect, "--kind", "reference", "--base", "micro").code == 0
    assert cli("canon", "--all").code == 0
    reg = open_registry()
    return reg, micro_base


def inputs(library, cfg):
    reg, base = library
    names, examples = canonical_library(reg, base, cfg.target)
    weights = [w for _, w in base_weights(base_path(base) / "transformer", [f"{n}.weight" for n in names])]
    return reg, base, names, examples, weights


def checkpoint_keeper():
    """(dict, checkpoint callback): the callback keeps copies of the last checkpoint in the dict."""
    import copy

    saved = {}

    def keep(tensors, optimizer, meta):
        saved.update(tensors={k: v.clone() for k, v in tensors.items()}, optimizer=copy.deepcopy(optimizer),
                     meta=copy.deepcopy(meta))

    return saved, keep


def test_library_splits_and_prompts(library):
    cfg = load_recipe("base", OVERRIDES)
    _, _, names, examples, _ = inputs(library, cfg)
    assert [(e.effect, e.split) for e in examples] == [("hue-orange", "heldout"), ("invert", "train"), ("melt", "train")]
    assert all(e.prompts and e.unseen_prompts and not set(e.prompts) & set(e.unseen_prompts) for e in examples)
    b, a = examples[2].factors[0]
    assert b.shape[1] == a.shape[0] == 2


def test_resume_continues_exactly(library):
    torch.set_num_threads(1)
    cfg = load_recipe("base", OVERRIDES)
    reg, base, names, examples, weights = inputs(library, cfg)
    text = TextEncoder("minilm")
    saved, keep = checkpoint_keeper()
    straight, meta = train_hypernet(reg, cfg, base, names, examples, weights, text, None, None, keep)
    assert saved["meta"]["step"] == 3
    resumed, meta2 = train_hypernet(reg, cfg, base, names, examples, weights, text, None, saved, None)
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    assert meta["history"] == meta2["history"]


@pytest.mark.parametrize("switch", ["model.queries=4", "model.tokenize=half", "model.conditioning=noise",
                                    "model.conditioning=none", "target=raw", "model.design=ensemble"])
def test_every_ablation_switch_trains(library, switch):
    cfg = load_recipe("base", OVERRIDES + ["steps=12", switch])
    reg, base, names, examples, weights = inputs(library, cfg)
    net, meta = train_hypernet(reg, cfg, base, names, examples, weights, TextEncoder("minilm"), None, None, None)
    first, last = meta["history"][0], meta["history"][-1]
    assert last["train_nmse"] < first["train_nmse"]  # it learns
    assert last["heldout_nmse"] is not None and torch.isfinite(torch.tensor(last["heldout_nmse"]))
    if switch == "model.design=ensemble":
        assert len(net.predictors) == 2  # one per block of the micro world


def test_mixup_targets_are_the_weighted_sum_of_deltas_and_mixup_trains(library):
    cfg = load_recipe("base", OVERRIDES + ["steps=12", "mixup=0.5"])
    reg, base, names, examples, weights = inputs(library, cfg)
    b, a = Targets(examples).mixed([[(1, 0.3), (2, 0.7)], [(0, 1.0)]])[0]  # the first layer
    delta = lambda e: examples[e].factors[0][0] @ examples[e].factors[0][1]
    torch.testing.assert_close(b[0] @ a[0], 0.3 * delta(1) + 0.7 * delta(2))
    torch.testing.assert_close(b[1] @ a[1], delta(0))
    picked_b, picked_a = Targets(examples).pick([2, 0])[0]
    assert torch.equal(picked_b[0], examples[2].factors[0][0]) and torch.equal(picked_a[1], examples[0].factors[0][1])
    net, meta = train_hypernet(reg, cfg, base, names, examples, weights, TextEncoder("minilm"), None, None, None)
    assert meta["history"][-1]["train_nmse"] < meta["history"][0]["train_nmse"]


def test_validation_effects_are_held_back_from_training(library):
    from p2e_cli.errors import P2EError

    cfg = load_recipe("base", OVERRIDES + ["validation_effects=1"])
    reg, base, names, examples, weights = inputs(library, cfg)
    seen = []
    text = TextEncoder("minilm")

    def spy(prompts):
        seen.extend(prompts)
        return text(prompts)

    spy.dim = text.dim
    _, meta = train_hypernet(reg, cfg, base, names, examples, weights, spy, None, None, None)
    invert = next(e for e in examples if e.effect == "invert")  # the first train effect is held back
    assert not set(invert.prompts[1:]) & set(seen)  # its training paraphrases are never encoded
    assert all(row["validation_nmse"] is not None for row in meta["history"])
    assert meta["validation_effects"] == ["invert"]  # recorded, so the saved library leaves it out
    _, named = train_hypernet(reg, load_recipe("base", OVERRIDES + ["steps=1", "validation_names=[melt]"]), base, names,
                              examples, weights, text, None, None, None)
    assert named["validation_effects"] == ["melt"]
    with pytest.raises(P2EError, match="hue-orange are not train effects"):
        train_hypernet(reg, load_recipe("base", OVERRIDES + ["validation_names=[hue-orange]"]), base, names, examples,
                       weights, text, None, None, None)
    with pytest.raises(P2EError, match="validation_effects 2 leaves none"):
        train_hypernet(reg, load_recipe("base", OVERRIDES + ["validation_effects=2"]), base, names, examples, weights,
                       text, None, None, None)


def test_validation_paraphrases_are_held_back_and_extra_paraphrases_are_trained_on(library, monkeypatch):
    """validation_paraphrases=1 keeps each train effect's last paraphrase out of training (logged as
    paraphrase_nmse); extra_paraphrases adds the effect's extra prompts to those it trains on. Every
    training row (mixup: a λ-mixture of two pairs, or one pair) is seen through Texts.weighted."""
    from p2e_cli.hypernet import train as train_module

    cfg = load_recipe("base", OVERRIDES + ["validation_paraphrases=1", "mixup=0.5", "extra_paraphrases=true", "steps=12"])
    reg, base, names, examples, weights = inputs(library, cfg)
    rows = []
    weighted = train_module.Texts.weighted
    monkeypatch.setattr(train_module.Texts, "weighted", lambda self, batch: rows.extend(batch) or weighted(self, batch))
    _, meta = train_hypernet(reg, cfg, base, names, examples, weights, TextEncoder("minilm"), None, None, None)
    train = [e for e in examples if e.split == "train"]
    held = {e.prompts[-1] for e in train}
    owner = {p: e.effect for e in train for p in e.prompts[:-1] + e.extra_prompts}
    assert all(len(e.extra_prompts) == 6 for e in train)
    assert len(rows) == cfg.steps * cfg.batch_size
    assert {p for row in rows for p, _ in row} & {p for e in train for p in e.extra_prompts}
    for row in rows:  # one or two training paraphrases, weights summing to 1, none held back
        assert len(row) in (1, 2) and not {p for p, _ in row} & held and all(p in owner for p, _ in row)
        assert abs(sum(w for _, w in row) - 1) < 1e-6
    assert {len(row) for row in rows} == {1, 2}
    assert all(row["paraphrase_nmse"] is not None for row in meta["history"])
    assert meta["history"][-1]["train_nmse"] < meta["history"][0]["train_nmse"]


def test_the_run_record_counts_the_extra_paraphrases(cli, library):
    """p2e train hypernet --set extra_paraphrases=true: the run's dataset record and log line count the
    extra prompts the train effects learn from (6 each), beside their own paraphrases."""
    overrides = [f"--set={o}" for o in OVERRIDES + ["steps=2", "extra_paraphrases=true"]]
    result = cli("train", "hypernet", "base", *overrides)
    assert result.code == 0
    train = [e for e in inputs(library, load_recipe("base", OVERRIDES))[3] if e.split == "train"]
    (run,) = open_registry().ls("run")
    assert run.data["dataset"]["extra_prompts"] == 6 * len(train) > 0
    assert f"+ {6 * len(train)} extra" in result.stderr


def test_fsdp_over_two_processes_trains_the_same_network_as_one_process(cli, library, home):
    """`accelerate launch` with 2 CPU processes (gloo) and sharding=fsdp (FSDP2 shards, gradient
    checkpointing on): each step's batch is split over the processes, and the registered network
    equals the single-process one up to float rounding."""
    from tests.wan_helpers import accelerate_launch

    overrides = [f"--set={o}" for o in OVERRIDES + ["model.gradient_checkpointing=true", "checkpoint_every=2"]]
    assert cli("train", "hypernet", "base", *overrides, "--set=name=single").code == 0
    launched = accelerate_launch(home, "train", "hypernet", "base", *overrides, "--set=name=sharded", "--set=sharding=fsdp")
    assert launched.returncode == 0, launched.stderr[-3000:]
    reg = open_registry()
    assert len(reg.ls("hypernet")) == 2  # one record, written by the main process
    # compare what the networks write (a raw-parameter comparison would trip on attention key biases:
    # their true gradient is 0, softmax ignores them, and Adam turns rounding noise into full steps)
    _, base, names, _, weights = inputs(library, load_recipe("base", OVERRIDES))
    text, mask = TextEncoder("minilm")(["melting into liquid", "inverting the colors"])
    outputs = []
    for name in ("single", "sharded"):
        net = load_hypernet(reg.path(reg.find("hypernet", name).files["weights"]))[0]
        outputs.append(torch.cat([torch.cat([b.flatten(1), a.flatten(1)], 1) for b, a in net(weights, text, mask)], 1))
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-4, rtol=1e-3)


FLOW = ["steps=3", "flow.steps=3", "flow.batch_size=2", "flow.clips_per_effect=2", "flow.val_clips=1",
        "flow.recovery_effects=1", "flow.warmup_steps=0", "flow.lr=1e-3"]


def test_flow_phase_trains_on_the_base_loss_logs_recovery_and_resumes_exactly(library):
    """After the ΔW steps, flow.steps more steps train through the frozen base (the loss of each
    clip with the LoRA the network writes for its effect's prompt); every evaluation logs R as
    p2e eval run measures it (and on a held-back validation paraphrase), and a checkpoint inside the
    flow phase resumes exactly."""
    torch.set_num_threads(1)
    cfg = load_recipe("base", OVERRIDES + FLOW + ["checkpoint_every=5", "validation_paraphrases=1"])
    reg, base, names, examples, weights = inputs(library, cfg)
    text = TextEncoder("minilm")
    saved, keep = checkpoint_keeper()
    net, meta = train_hypernet(reg, cfg, base, names, examples, weights, text, None, None, keep)
    assert [row["step"] for row in meta["history"]] == [3, 6]
    # [L0, L_ref] cached per measured effect: the unseen paraphrase of a train effect, the held-out effect
    losses = meta["flow_losses"]
    assert set(losses) == {"invert", "hue-orange"}
    for row in meta["history"]:  # R where it is defined: the reference beats the base (random teachers may not)
        for group, effect in (("unseen", "invert"), ("paraphrase", "invert"), ("heldout", "hue-orange")):
            l0, lref = losses[effect]
            assert (f"{group}_recovery" in row) == (l0 > lref)
    assert "heldout_recovery" in meta["history"][-1] and torch.isfinite(torch.tensor(meta["history"][-1]["heldout_recovery"]))
    # the flow phase changed the network: the first 3 steps alone give another one
    only_delta, _ = train_hypernet(reg, load_recipe("base", OVERRIDES + ["steps=3"]), base, names, examples, weights,
                                   text, None, None, None)
    assert any(not torch.equal(v, w) for v, w in zip(net.state_dict().values(), only_delta.state_dict().values()))
    assert saved["meta"]["step"] == 5  # inside the flow phase
    resumed, meta2 = train_hypernet(reg, cfg, base, names, examples, weights, text, None, saved, None)
    for (k, v), w in zip(net.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    assert meta["history"][-1] == meta2["history"][-1]


def test_init_starts_from_a_registered_hypernetwork(cli, library):
    """`init` loads a trained network; with steps=0 only the flow phase trains (here at lr 0, so
    the result is the init network itself), and the log starts with where it starts (step 0)."""
    overrides = [f"--set={o}" for o in OVERRIDES + FLOW + ["flow.steps=0", "name=first"]]
    assert cli("train", "hypernet", "base", *overrides).code == 0
    again = [f"--set={o}" for o in OVERRIDES + FLOW + ["steps=0", "flow.steps=1", "flow.lr=0", "name=second", "init=first"]]
    assert cli("train", "hypernet", "base", *again).code == 0
    reg = open_registry()
    nets = [load_hypernet(reg.path(reg.find("hypernet", n).files["weights"]))[0] for n in ("first", "second")]
    for (k, v), w in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.equal(v, w), k
    assert [row["step"] for row in reg.find("hypernet", "second").data["history"]] == [0, 1]
    bad = cli("train", "hypernet", "base", *again[:-1], "--set=init=first", "--set=model.dim=32")
    assert bad.code == 2 and "model shape" in bad.stderr
    nothing = cli("train", "hypernet", "base", *[f"--set={o}" for o in OVERRIDES + ["steps=0"]])
    assert nothing.code == 2 and "trains nothing" in nothing.stderr


def test_bf16_autocast_trains(library):
    cfg = load_recipe("base", OVERRIDES + ["mixed_precision=bf16", "steps=3"])
    reg, base, names, examples, weights = inputs(library, cfg)
    net, meta = train_hypernet(reg, cfg, base, names, examples, weights, TextEncoder("minilm"), None, None, None)
    assert all(torch.isfinite(torch.tensor(row["train_nmse"])) for row in meta["history"])
    assert next(net.parameters()).dtype == torch.float32  # master weights stay float32


def test_gram_form_of_the_delta_error_matches_the_dense_one():
    g = torch.Generator().manual_seed(0)
    b1, a1, b2, a2 = (torch.randn(3, 7, 2, generator=g), torch.randn(3, 2, 5, generator=g),
                      torch.randn(3, 7, 2, generator=g), torch.randn(3, 2, 5, generator=g))
    dense = (b1 @ a1 - b2 @ a2).pow(2).sum(dim=(1, 2))
    torch.testing.assert_close(frob2_of_product_difference(b1, a1, b2, a2), dense)
    nmse = delta_nmse([(b1, a1)], [(b2, a2)])
    torch.testing.assert_close(nmse, dense / (b2 @ a2).pow(2).sum(dim=(1, 2)))
    assert dataclasses.is_dataclass(load_recipe("base", []))


def test_generate_uses_the_hypernet_shipped_beside_a_shipped_world(cli, micro_world, home, monkeypatch, tmp_path):
    """A fresh install: the base and its hypernetwork come from package data, registered on first use."""
    import shutil

    from p2e_cli.hypernet.model import HypernetConfig, Hypernetwork, layer_specs
    from p2e_cli.hypernet.store import save_hypernet
    from p2e_cli.lora_io import read_lora
    from p2e_cli.wan import layer_table_hash

    shipped = tmp_path / "worlds" / "micro"
    shipped.mkdir(parents=True)
    for part in ("transformer", "vae", "scheduler", "model_index.json", "p2e_base.json"):
        (shutil.copytree if (micro_world / part).is_dir() else shutil.copy)(micro_world / part, shipped / part)
    table = layer_table(base_config(micro_world))
    net = Hypernetwork(HypernetConfig(dim=16, heads=2, queries=4, fusion_layers=1, rank=2, text_dim=384),
                       layer_specs(table))
    save_hypernet(shipped / "hypernet.safetensors", net, text_encoder="minilm", layer_table=layer_table_hash(table),
                  target="canonical", library=[("melt", "melting into liquid")], library_embeddings=torch.randn(1, 384),
                  dtype=torch.float16)
    monkeypatch.setattr("p2e_cli.world.shipped.shipped_world", lambda name: shipped if name == "micro" else None)
    out = tmp_path / "melt.safetensors"
    result = cli("generate", "melting into liquid", "--base", "micro", "-o", out, "--json")
    assert result.code == 0, result.stderr
    reg = open_registry()
    [hypernet] = reg.ls("hypernet")
    assert hypernet.name == "micro" and hypernet.data["shipped"] and result.json()[0]["nearest"][0]["effect"] == "melt"
    assert read_lora(out).ranks == [2] and read_lora(out).p2e("kind") == "predicted"
    assert cli("generate", "spinning", "--base", "micro", "--no-register").code == 0 and len(reg.ls("hypernet")) == 1

    # a p2e upgrade that ships another micro world: the old base and its hypernetwork are retired, not reused
    old_base, old_net = reg.find("base", "micro"), hypernet
    settings = json.loads((shipped / "p2e_base.json").read_text())
    (shipped / "p2e_base.json").write_text(json.dumps({**settings, "fps": settings["fps"] + 1}))
    assert cli("generate", "spinning", "--base", "micro", "--no-register").code == 0
    new_base, new_net = reg.find("base", "micro"), reg.find("hypernet", "micro")
    assert new_base.id != old_base.id and new_net.id != old_net.id and new_net.data["base"] == new_base.id
    retired = {r.name for r in reg.ls() if r.data.get("retired")}
    assert retired == {f"micro-old-{old_base.id[:6]}", f"micro-old-{old_net.id[:6]}"}
    refused = cli("generate", "spinning", "--base", f"micro-old-{old_base.id[:6]}", "--no-register")
    assert refused.code == 2 and "is retired" in refused.stderr
    # ... or the same world with another hypernetwork: it is the one generate uses
    before = {r.id for r in reg.ls("hypernet")}
    torch.nn.init.normal_(next(net.parameters()))
    save_hypernet(shipped / "hypernet.safetensors", net, text_encoder="minilm", layer_table=layer_table_hash(table),
                  target="canonical", library=[("melt", "melting into liquid")], library_embeddings=torch.randn(1, 384),
                  dtype=torch.float16)
    assert cli("generate", "spinning", "--base", "micro", "--no-register").code == 0
    [newest] = [r for r in reg.ls("hypernet") if r.id not in before]
    assert newest.name == "micro" and newest.data["base"] == reg.find("base", "micro").id != new_base.id


def test_a_packed_library_ships_beside_a_world_and_registers_as_references(cli, library, micro_world, home, monkeypatch, tmp_path):
    """p2e world ship --library (fp16, one file of the references' own factors) -> on a fresh install
    `p2e canon --all` registers every effect's reference LoRA with the world, and turns them
    back into the same canonical library; the raw factors (target: raw) survive too."""
    import shutil

    from p2e_cli.registry import set_home
    from p2e_cli.catalog import resolve_base
    from p2e_cli.world.shipped import LIBRARY_FILE

    reg, base = library
    shipped = tmp_path / "worlds" / "micro"
    shipped.mkdir(parents=True)
    for part in ("transformer", "vae", "scheduler", "model_index.json", "p2e_base.json"):
        (shutil.copytree if (micro_world / part).is_dir() else shutil.copy)(micro_world / part, shipped / part)
    shipped_files = cli("world", "ship", "micro", "--library", "-o", shipped, "--json")
    assert shipped_files.code == 0, shipped_files.stderr
    assert list(shipped_files.json()["written"]) == [str(shipped / LIBRARY_FILE)]
    names, before = canonical_library(reg, base)
    _, raw_before = canonical_library(reg, base, target="raw")
    monkeypatch.setattr("p2e_cli.world.shipped.shipped_world", lambda name: shipped if name == "micro" else None)
    monkeypatch.setenv("P2E_HOME", str(tmp_path / "fresh"))
    set_home(None)
    shipped_base = resolve_base("micro")
    assert open_registry().ls("lora") == []  # registering the world alone imports nothing (first render stays fast)
    from p2e_cli.errors import P2EError

    with pytest.raises(P2EError) as missing:  # train hypernet on a fresh install says what to run
        canonical_library(open_registry(), shipped_base)
    assert "p2e canon --all registers the library shipped with micro" in missing.value.hint
    assert cli("canon", "--all").code == 0
    refs = open_registry().ls("lora", "reference")
    assert sorted(r.data["effect"] for r in refs) == ["hue-orange", "invert", "melt"]
    assert all(r.data["shipped"] and r.data["base"] == shipped_base.id for r in refs)
    again_names, after = canonical_library(open_registry(), shipped_base)
    assert again_names == names and [e.effect for e in after] == [e.effect for e in before]
    _, raw_after = canonical_library(open_registry(), shipped_base, target="raw")
    for x, y in [*zip(before, after), *zip(raw_before, raw_after)]:
        for (b1, a1), (b2, a2) in zip(x.factors, y.factors):
            torch.testing.assert_close(b2 @ a2, b1 @ a1, atol=2e-3, rtol=2e-3)  # fp16 storage
    for x, y in zip(raw_before, raw_after):  # the trained factors themselves, not only their product
        torch.testing.assert_close(y.factors[0][0], x.factors[0][0], atol=2e-3, rtol=2e-3)

    # a fresh install where nothing has run yet: `p2e canon --all` registers the default world first
    monkeypatch.setattr("p2e_cli.world.shipped.shipped_world", lambda name: shipped if name in ("micro", "tiny") else None)
    monkeypatch.setenv("P2E_HOME", str(tmp_path / "fresh-default"))
    set_home(None)
    first = cli("canon", "--all", "--json")
    assert first.code == 0 and len(first.json()) == 3, first.stderr
    assert [b.name for b in open_registry().ls("base")] == ["tiny"]
    # ... and `p2e train hypernet` there canonicalizes the shipped library itself (the README's third line)
    monkeypatch.setenv("P2E_HOME", str(tmp_path / "fresh-train"))
    set_home(None)
    trained = cli("train", "hypernet", "base", *[f"--set={o}" for o in OVERRIDES if o != "base=micro"], "--set=steps=1")
    assert trained.code == 0, trained.stderr
    assert len(open_registry().ls("lora", "canonical")) == 3


def test_shrinking_toward_the_library_mean_is_fit_on_validation_effects_and_saved(library, tmp_path):
    from p2e_cli.errors import P2EError
    from p2e_cli.hypernet.store import save_hypernet

    cfg = load_recipe("base", OVERRIDES + ["validation_effects=1", "shrink_rank=3"])
    reg, base, names, examples, weights = inputs(library, cfg)
    text = TextEncoder("minilm")
    net, meta = train_hypernet(reg, cfg, base, names, examples, weights, text, None, None, None)
    alpha = meta["shrink"]["alpha"]
    assert 0.0 <= alpha <= 1.0 and float(net.shrink) == pytest.approx(alpha)
    melt = next(e for e in examples if e.effect == "melt")  # the one train effect left: the prior is its ΔW
    for i in range(len(names)):
        pb, pa = net.prior(i)
        mb, ma = melt.factors[i]
        assert torch.allclose(pb @ pa, mb @ ma, atol=1e-5)
    # shrunk = α·ΔW + (1 − α)·prior exactly, before truncation back to rank r
    embeds, mask = text(["melting"])
    raw = net(weights, embeds, mask)
    for i, ((b, a), (sb, sa)) in enumerate(zip(raw, net.shrunk(raw))):
        pb, pa = net.prior(i)
        assert torch.allclose(sb[0] @ sa[0], alpha * b[0] @ a[0] + (1 - alpha) * pb @ pa, atol=1e-5)
    path = save_hypernet(tmp_path / "h.safetensors", net, text_encoder="minilm", layer_table=base.data["layer_table"],
                         target="canonical", library=[], library_embeddings=torch.zeros(0, 384))
    loaded, _, _ = load_hypernet(path)
    assert float(loaded.shrink) == pytest.approx(alpha) and torch.equal(loaded.prior(0)[0], net.prior(0)[0])
    # a file from before session 19 names the retired switches: off, it loads; on, it is refused
    for retired, loads in (({"prompt": "tokens", "anchors": 0}, True), ({"anchors": 7}, False)):
        old = rewrite_config(path, tmp_path / "old.safetensors", retired)
        if loads:
            assert torch.equal(load_hypernet(old)[0].prior(0)[0], net.prior(0)[0])
        else:
            with pytest.raises(P2EError, match="trained with anchors, retired in session 19"):
                load_hypernet(old)
    written = Generator(path, base)(["melting"])[0]  # what generate writes: the shrunk ΔW's best rank-r approximation
    for i, name in enumerate(names):
        b, a = written[name]
        sb, sa = net.shrunk(raw)[i]
        assert b.shape[1] == a.shape[0] == net.config.rank
        u, s_, vh = torch.linalg.svd((sb[0] @ sa[0]).double())
        best = (u[:, :net.config.rank] * s_[:net.config.rank]) @ vh[:net.config.rank]
        assert torch.allclose((b @ a).double(), best, atol=1e-4)
    with pytest.raises(P2EError, match="validation_effects is 0"):
        train_hypernet(reg, load_recipe("base", OVERRIDES + ["shrink_rank=3"]), base, names, examples, weights, text,
                       None, None, None)


def rewrite_config(path, out, extra: dict):
    """A copy of a saved hypernetwork whose stored network config also has `extra`."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from p2e_cli.hypernet.store import META_KEY

    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(metadata[META_KEY])
    meta["config"].update(extra)
    save_file(tensors, str(out), metadata={**metadata, META_KEY: json.dumps(meta)})
    return out


def test_truncate_is_the_best_low_rank_approximation_batched():
    from p2e_cli.canon import truncate

    g = torch.Generator().manual_seed(0)
    b, a = torch.randn(3, 12, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, 9, generator=g, dtype=torch.float64)
    tb, ta = truncate(b, a, 2)
    assert tb.shape == (3, 12, 2) and ta.shape == (3, 2, 9)
    for k in range(3):
        u, s, vh = torch.linalg.svd(b[k] @ a[k])
        assert torch.allclose(tb[k] @ ta[k], (u[:, :2] * s[:2]) @ vh[:2], atol=1e-10)
    nb, na = truncate(torch.randn(2, 3, 1, generator=g), torch.randn(2, 1, 4, generator=g), 2)  # rank 1 < 2: padded
    assert nb.shape == (2, 3, 2) and na.shape == (2, 2, 4) and float(nb[..., 1].abs().max()) == 0.0


def test_a_non_library_effect_in_the_library_is_named_not_silent(library, cli, tmp_path, capsys):
    import json

    reg, base = library
    source = tmp_path / "melt.safetensors"  # written by the fixture; any LoRA of the base's shape will do
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "my-teacher", "effect_prompt": "a teacher's own effect",
                                                  "lora_path": str(source)}) + "\n")
    assert cli("lora", "import", "--manifest", tmp_path / "m.jsonl", "--base", "micro").code == 0
    assert cli("canon", "--all").code == 0
    capsys.readouterr()
    _, examples = canonical_library(reg, base)
    assert [e.prompts for e in examples if e.effect == "my-teacher"] == [["a teacher's own effect"]]
    warned = " ".join(capsys.readouterr().err.split())
    assert "train on their one recorded prompt" in warned and "my-teacher" in warned


def test_the_flow_phase_learns_from_sampled_effects_too(library, monkeypatch):
    """With flow.space_effects, part of each flow batch comes from the effect space (effects/space.py):
    their clips are rendered and encoded once per base (cached), their prompts reach the network, and
    a checkpoint inside the phase still resumes exactly. A sampled effect has no reference: it adds
    only to the flow loss, so the result differs from the library-only phase. The run's validation
    effects are kept out of the space as the held-out ones are."""
    from p2e_cli.effects import space as space_module

    torch.set_num_threads(1)
    kept_out = []
    exclusion = space_module.exclusion
    monkeypatch.setattr(space_module, "exclusion", lambda names=(): kept_out.append(list(names)) or exclusion(names))
    space = ["flow.space_effects=3", "flow.space_clips=1", "flow.space_share=0.5", "checkpoint_every=5",
             "validation_names=[melt]"]
    cfg = load_recipe("base", OVERRIDES + FLOW + space)
    reg, base, names, examples, weights = inputs(library, cfg)
    text = TextEncoder("minilm")
    saved, keep = checkpoint_keeper()
    net, meta = train_hypernet(reg, cfg, base, names, examples, weights, text, None, None, keep)
    assert kept_out == [["melt"]]
    cached = list(reg.folder("cache", "space").glob(f"{base.id}-3x1-*.pt"))
    assert len(cached) == 1
    resumed, _ = train_hypernet(reg, cfg, base, names, examples, weights, text, None, saved, None)  # from the cache
    for (k, v), w in zip(net.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    library_only, _ = train_hypernet(reg, load_recipe("base", OVERRIDES + FLOW), base, names, examples, weights, text,
                                     None, None, None)
    assert any(not torch.equal(v, w) for v, w in zip(net.state_dict().values(), library_only.state_dict().values()))
