"""A job whose OUTPUT is an S3 bucket (moto): previews, comparisons and the report are written
into the bucket beside the job state, with the output store's options."""

from __future__ import annotations

import json
import uuid
from html.parser import HTMLParser

from click.testing import CliRunner

from tests.media.makemedia import make_video
from tests.storage.conftest import fast_sdk_retries, s3_options


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.sources += [v for k, v in attrs if k in ("src", "href") and v and v[0] != "#"]


def test_previews_comparisons_and_report_in_a_bucket(models_dir, s3_server, tmp_path):
    import posixpath

    from nhance_batch import storage
    from nhance_batch.cli import cli

    s3_server.proxy.heal()
    options = s3_options(s3_server.proxy.url)
    bucket = f"nhance-{uuid.uuid4().hex[:12]}"
    fs = storage.resolve(f"s3://{bucket}", options)[0]
    fast_sdk_retries(fs)
    fs.mkdir(bucket)
    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=6, gop=3, audio_tracks=1)
    output = f"s3://{bucket}/out"
    keyed = json.dumps({"s3": options})
    runner = CliRunner()
    run = runner.invoke(cli, ["run", str(tmp_path / "in"), output, "--previews", "--executor",
                              "sequential", "--storage-options", keyed])
    assert run.exit_code == 0, run.output
    compare = runner.invoke(cli, ["compare", output, "--storage-options", keyed])
    assert compare.exit_code == 0, compare.output
    assert compare.output.strip() == f"{output}/_nhance/compare/a.split.mp4"
    report = runner.invoke(cli, ["report", output, "--storage-options", keyed])
    assert report.exit_code == 0, report.output
    index = f"{output}/_nhance/report/index.html"
    assert report.output.strip() == index
    fs.invalidate_cache()
    for key in ("_nhance/preview/a.mp4", "_nhance/compare/a.split.mp4", "_nhance/summary.json"):
        assert fs.exists(f"{bucket}/out/{key}"), key
    parser = _Sources()
    parser.feed(fs.cat_file(f"{bucket}/out/_nhance/report/index.html").decode())
    assert "../preview/a.mp4" in parser.sources
    for link in parser.sources:
        key = posixpath.normpath(posixpath.join(f"{bucket}/out/_nhance/report", link))
        assert fs.exists(key), link
