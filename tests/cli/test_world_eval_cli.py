"""p2e world eval through the real CLI: on the micro world, and on a micro world whose codec has position channels."""

from p2e_cli.recipes import load_recipe
from p2e_cli.world.build import build_world

QUICK = ["--no-identify", "--photos", "1", "--effects", "1"]


def test_world_eval_reports_the_codec_and_the_base(cli, micro_base, tmp_path):
    sheet = tmp_path / "sheet.png"
    report = cli("world", "eval", "micro", *QUICK, "--sheet", sheet, "--json").json()
    assert report["vae_psnr_heldout_clips"] > 0 and sheet.stat().st_size and "vae_position_rmse" not in report
    assert set(report["loss_effects_heldout"]["per_effect"]) and "vae_psnr_effects_median" not in report
    assert "effects whose loss exceeds neutral" in cli("world", "eval", "micro", *QUICK).stdout


def test_world_eval_measures_a_codecs_position_channels(cli, tmp_path):
    """vae.position_channels: the build records them in p2e_base.json, and world eval measures how exactly the
    encoder writes them (a 3-step codec: far from exact, ~0.6 for one that writes nothing)."""
    import json

    recipe = load_recipe("world-micro", ["vae.z_dim=6", "vae.position_channels=2", "vae.steps=3", "transformer.steps=2",
                                         "transformer.corpus_clips=8"])
    out = build_world(recipe, tmp_path / "pos")
    assert json.loads((out / "p2e_base.json").read_text())["position_channels"] == 2
    assert cli("base", "add", "pos", "--path", out).code == 0
    report = cli("world", "eval", "pos", *QUICK, "--json").json()
    assert 0.3 < report["vae_position_rmse"] < 3
    assert "VAE position channels, RMS error" in cli("world", "eval", "pos", *QUICK).stdout
