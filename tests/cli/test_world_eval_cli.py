"""p2e world eval through the real CLI on the micro world (whose codec has position channels)."""


def test_world_eval_reports_the_codec_and_the_base(cli, micro_base, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = cli("world", "eval", "micro", "--no-identify", "--photos", "1", "--effects", "1", "--sheet", sheet, "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert 0 <= report["vae_position_rmse"] < 5 and report["vae_psnr_heldout_clips"] > 0 and sheet.stat().st_size
    assert set(report["loss_effects_heldout"]["per_effect"]) and "vae_psnr_effects_median" not in report
    human = cli("world", "eval", "micro", "--no-identify", "--photos", "1", "--effects", "1")
    assert "VAE position channels, RMS error" in human.stdout and "effects whose loss exceeds neutral" in human.stdout
