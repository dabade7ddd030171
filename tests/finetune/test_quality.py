"""Offline quality: fine-tuning the iPhone model on a synthetic new phone (scikit-image's
photographs through a fixed, seeded camera model: tone curve, colour cast, blur, noise, JPEG)
beats both the base model and doing nothing on held-out pairs, with the full DPED recipe
(content network, colour, texture with the discriminator, TV) at small patches."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner


@pytest.mark.slow
def test_finetuned_beats_base_by_1db_and_beats_identity(pairs_dir, user_models):
    from nhance_batch.cli import cli

    result = CliRunner().invoke(cli, [
        "finetune", "--pairs", str(pairs_dir), "--name", "synthphone", "--base", "iphone",
        "--steps", "200", "--batch", "4", "--patch", "32", "--lr", "1e-4",
        "--content", "efficientnet-lite0", "--val-fraction", "0.2", "--eval-every", "50",
        "--checkpoint-every", "100"])
    assert result.exit_code == 0, result.output
    info = json.loads((user_models / "synthphone" / "model.json").read_text())
    m = info["metrics"]
    assert m["on"] == "validation" and info["data"]["validation_pairs"] == 6
    print("PSNR/SSIM on held-out pairs:", json.dumps(m), "history:", json.dumps(info["history"]))
    assert m["finetuned"]["psnr"] >= m["base"]["psnr"] + 1.0, m
    assert m["finetuned"]["psnr"] > m["identity"]["psnr"], m
    assert m["finetuned"]["ssim"] > m["base"]["ssim"], m
    assert [h["step"] for h in info["history"]] == [0, 50, 100, 150, 200]
