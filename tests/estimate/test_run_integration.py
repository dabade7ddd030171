"""``run --dry-run`` prints the plan and runs nothing; a run's summary and status carry the
enhancer's busy share; ``--codec auto`` is resolved once and said so in the summary."""

from __future__ import annotations

import json

from click.testing import CliRunner

from nhance_batch.cli import cli
from nhance_batch.media import encode as encode_mod
from tests.media.makemedia import make_video


def test_dry_run_plans_and_writes_nothing(tmp_path):
    src = tmp_path / "in"
    make_video(src / "a.mp4", width=64, height=48, frames=8)
    (src / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(src), str(out), "--dry-run", "--chunk-frames", "4"])
    assert result.exit_code == 1, result.output  # one input is unusable
    assert "broken.mp4" in result.output and "H100" in result.output
    assert not out.exists()
    (src / "broken.mp4").unlink()
    result = runner.invoke(cli, ["run", str(src), str(out), "--dry-run"])
    assert result.exit_code == 0 and not out.exists()


def test_summary_and_status_report_busy_share_and_codec_choice(tmp_path):
    src = make_video(tmp_path / "a.mp4", width=64, height=48, frames=9)
    out = tmp_path / "out"
    summary_path = tmp_path / "s.json"
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(src), str(out), "--executor", "sequential",
                                 "--codec", "auto", "--chunk-frames", "3",
                                 "--summary-json", str(summary_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    busy = summary["enhancer_busy"]
    assert 0 < busy["overall"] <= 1
    assert busy["actors"][0]["chunks"] == 3
    assert busy["busy_s"] <= busy["wall_s"]
    choice = encode_mod.choose_codec()
    assert any(choice.codec in note for note in summary["notes"])
    if not choice.hardware:
        assert any("using libx264" in note for note in summary["notes"])
    assert "enhancer busy" in result.output
    status = runner.invoke(cli, ["status", str(out), "--json"])
    document = json.loads(status.output)
    assert document["enhancer_busy"]["overall"] == busy["overall"]
    assert document["runs"][-1]["enhancer_busy"]["overall"] == busy["overall"]
