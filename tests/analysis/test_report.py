"""The job report page and the job-level compare command, on a made-up finished job."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.analysis.helpers import video_format
from tests.analysis.jobs import make_job


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                if value.startswith("#"):
                    continue
                if "://" in value or value.startswith("//"):
                    self.external.append(value)
                else:
                    self.links.append(value)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    return make_job(tmp_path_factory.mktemp("job"))


def test_compare_job_writes_one_comparison_per_done_video(job):
    from nhance_batch.cli import cli

    result = CliRunner().invoke(cli, ["compare", str(job["output"]), "--mode", "swipe"])
    assert result.exit_code == 0, result.output
    expected = job["output"] / "_nhance" / "compare" / "trip" / "day.swipe.mp4"
    assert result.output.strip().splitlines() == [str(expected)]
    fmt = video_format(expected)
    assert (fmt["codec"], fmt["pix_fmt"], fmt["frames"]) == ("h264", "yuv420p", 12)


def test_report_names_every_video_and_links_only_existing_files(job):
    from nhance_batch.cli import cli

    result = CliRunner().invoke(cli, ["report", str(job["output"])])
    assert result.exit_code == 0, result.output
    index = Path(result.output.strip().splitlines()[-1])
    assert index == job["output"] / "_nhance" / "report" / "index.html"
    parser = _Links()
    parser.feed(index.read_text(encoding="utf-8"))
    text = " ".join(parser.text)
    assert "trip/day.mp4" in text and "broken.mp4" in text
    assert "not a readable media file" in text  # the failed video's error
    assert "low light" in text.lower()
    assert not parser.external  # self-contained: nothing from the network
    from PIL import Image

    images = [link for link in parser.links if link.endswith((".png", ".jpg"))]
    # 3 stills x 2 sides, gain, histogram, throughput, stages, low-light groups
    assert len(images) >= 11
    for link in parser.links:
        target = (index.parent / link).resolve()
        assert target.is_file(), link
        if link.endswith((".png", ".jpg")):
            with Image.open(io.BytesIO(target.read_bytes())) as image:
                image.verify()
    assert any(link.endswith("trip/day.mkv") for link in parser.links)  # the output


def test_report_of_a_folder_without_a_job_exits_2(tmp_path):
    from nhance_batch.cli import cli

    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "no job manifest" in result.output


def test_compare_job_goes_on_past_a_video_it_cannot_compare(tmp_path):
    from nhance_batch.cli import cli

    job = make_job(tmp_path)
    job["enhanced"].write_bytes(b"gone bad")  # the committed output was damaged since
    result = CliRunner().invoke(cli, ["compare", str(job["output"])])
    assert result.exit_code == 1
    assert "failed:" in result.output and "day.mkv" in result.output
    assert not (job["output"] / "_nhance" / "compare" / "trip" / "day.split.mp4").exists()
    # the report still comes out, with the trouble noted in the video's section
    report = CliRunner().invoke(cli, ["report", str(job["output"])])
    assert report.exit_code == 0, report.output
    page = (job["output"] / "_nhance" / "report" / "index.html").read_text(encoding="utf-8")
    assert "MediaError" in page and "trip/day.mp4" in page
