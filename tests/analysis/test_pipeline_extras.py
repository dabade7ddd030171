"""A real job (sequential executor, the model on a tiny clip) with previews: the preview and
the metrics land in the manifest and in ``status --json``, and the report shows the run."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from click.testing import CliRunner

from tests.analysis.helpers import video_format
from tests.media.makemedia import make_video


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.sources += [v for k, v in attrs if k in ("src", "href") and v and v[0] != "#"]


def test_run_with_previews_records_preview_and_metrics(models_dir, tmp_path):
    from nhance_batch.cli import cli

    source = make_video(tmp_path / "in" / "clips" / "a.mp4", width=64, height=48, frames=10,
                        gop=5, audio_tracks=1, rotation=90)
    output = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(tmp_path / "in"), str(output), "--lossless",
                                 "--previews", "--executor", "sequential"])
    assert result.exit_code == 0, result.output
    status = runner.invoke(cli, ["status", str(output), "--json"])
    assert status.exit_code == 0, status.output
    video = json.loads(status.output)["videos"][0]
    assert video["status"] == "done"
    preview = output / "_nhance" / "preview" / "clips" / "a.mp4"
    assert video["preview"] == str(preview)
    fmt = video_format(preview)
    assert (fmt["codec"], fmt["pix_fmt"], fmt["frames"]) == ("h264", "yuv420p", 10)
    assert (fmt["width"], fmt["height"]) == (48, 64)  # upright
    assert video_format(video["output"])["codec"] == "ffv1"  # what browsers cannot play
    metrics = video["metrics"]
    assert metrics["samples"] == 1 and metrics["low_light"] is False
    assert metrics["before"]["luminance"] > 0.25
    assert set(metrics["change"]) >= {"luminance_gain", "noise_amplification"}
    assert metrics["added_flicker"] == video["added_flicker"] is not None

    report = runner.invoke(cli, ["report", str(output)])
    assert report.exit_code == 0, report.output
    index = output / "_nhance" / "report" / "index.html"
    parser = _Sources()
    parser.feed(index.read_text(encoding="utf-8"))
    assert "img/job-throughput.png" in parser.sources  # the run's summary was kept
    assert "../preview/clips/a.mp4" in parser.sources
    for link in parser.sources:
        assert (index.parent / link).is_file(), link
    assert "metrics measured for this report" not in index.read_text(encoding="utf-8")
