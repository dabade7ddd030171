"""The job report: ``OUTPUT/_nhance/report/index.html``, one self-contained page.

No network and no CDN: the pictures (stills as JPEG, plots as PNG) are files in
``report/img/`` beside the page, the style is inline, and videos are linked by relative paths
only where the files exist (outputs, previews, comparisons).

Per video: stills before and after at 10%, 50% and 90% of its duration; the per-frame gain
before and after temporal stabilisation over time (from the manifest's gains); luminance
histograms; the metrics table; the error of a failed video. For the job: videos done and
failed, the throughput curve and stage speeds of the last run (from its recorded summary; the
stage speeds from the manifest's chunk timings when there is none) and a low-light section
comparing the metric changes of low-light videos with the others'.

Metrics missing from the manifest (a job run before they were recorded) are measured here,
for the page only.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nhance_batch.analysis.gains import rgb_gains

log = logging.getLogger(__name__)

#: Where in a video the stills are taken, as shares of its duration.
STILL_POINTS = (0.1, 0.5, 0.9)
#: Width stills are scaled down to.
STILL_WIDTH = 480
#: The metrics compared between low-light videos and the others (ratios after / before).
GROUP_METRICS = ("luminance_gain", "contrast_gain", "colourfulness_gain", "noise_amplification",
                 "sharpness_gain")
_COMPARE_MODES = ("split", "swipe", "side-by-side")


@dataclass
class _Page:
    """What the template shows, and the files to write beside it."""

    title: str
    files: dict[str, bytes] = field(default_factory=dict)  # name under report/ -> bytes

    def add(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return name


def _metrics_of(video: Any) -> dict | None:
    metrics = getattr(video, "metrics", None)
    if isinstance(metrics, str):
        try:
            metrics = json.loads(metrics)
        except ValueError:
            return None
    return metrics if isinstance(metrics, dict) else None


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "share":
        return f"{100 * value:.2f}%"
    if kind == "ratio":
        return f"×{value:.3f}"
    if kind == "points":
        return f"{100 * value:+.2f} pt"
    return f"{value:.4g}"


_ROWS = (  # (label, metric, change key, change kind)
    ("mean luminance", "luminance", "luminance_gain", "ratio"),
    ("RMS contrast", "contrast", "contrast_gain", "ratio"),
    ("colourfulness (Hasler–Süsstrunk)", "colourfulness", "colourfulness_gain", "ratio"),
    ("noise sigma (Immerkær high-pass)", "noise", "noise_amplification", "ratio"),
    ("sharpness (Laplacian variance)", "sharpness", "sharpness_gain", "ratio"),
    ("clipped highlights", "clipped_highlights", "clipped_highlights_change", "points"),
    ("crushed shadows", "crushed_shadows", "crushed_shadows_change", "points"),
)


def metrics_rows(metrics: dict, video: Any) -> list[dict[str, str]]:
    """The metrics table of one video: label, before, after, change."""
    rows = []
    for label, name, change, kind in _ROWS:
        value_kind = "share" if name in ("clipped_highlights", "crushed_shadows") else "number"
        rows.append({"label": label,
                     "before": _fmt(metrics.get("before", {}).get(name), value_kind),
                     "after": _fmt(metrics.get("after", {}).get(name), value_kind),
                     "change": _fmt(metrics.get("change", {}).get(change), kind)})
    rows.append({"label": "flicker (mean |Δ gain| per frame)",
                 "before": _fmt(getattr(video, "model_flicker", None), "number"),
                 "after": _fmt(getattr(video, "added_flicker", None), "number"),
                 "change": "model → stabilised"})
    return rows


def _stage_fps_from_chunks(videos: list[Any]) -> dict[str, float]:
    frames = {"decode": 0, "enhance": 0, "encode": 0}
    seconds = {"decode": 0.0, "enhance": 0.0, "encode": 0.0}
    for video in videos:
        for c in video.chunks:
            if c.status != "done":
                continue
            decoded, own = c.ctx_end - c.ctx_start, c.end - c.start
            for stage, n, s in (("decode", decoded, c.decode_s), ("enhance", decoded, c.enhance_s),
                                ("encode", own, c.encode_s)):
                if s:
                    frames[stage] += n
                    seconds[stage] += s
    return {k: frames[k] / seconds[k] for k in frames if seconds[k] > 0}


def _exists(url: str | None, options: dict | None) -> bool:
    from nhance_batch.analysis.jobfiles import exists

    if not url:
        return False
    try:
        return exists(url, options)
    except Exception:  # noqa: BLE001 - a link we cannot check is a link we do not show
        return False


def _link(url: str, report_dir: str) -> str:
    """A relative link from the report folder to ``url`` (same store)."""
    from nhance_batch import storage

    if storage.is_local_url(url) and storage.is_local_url(report_dir):
        return os.path.relpath(storage.local_path(url),
                               storage.local_path(report_dir)).replace(os.sep, "/")
    return posixpath.relpath(url.split("://", 1)[-1], report_dir.split("://", 1)[-1])


def _video_section(page: _Page, video: Any, number: int, layout: Any, options: dict | None,
                   measure: bool) -> dict[str, Any]:
    from nhance_batch.analysis import plots, stills
    from nhance_batch.analysis.frames import seconds
    from nhance_batch.analysis.jobfiles import local_copy
    from nhance_batch.analysis.metrics import video_metrics
    from nhance_batch.media.probe import probe

    key = f"v{number:04d}"
    section: dict[str, Any] = {
        "key": key, "input": video.input, "relative": video.relative, "output": video.output,
        "status": video.status, "error": video.error, "note": video.note,
        "frames": video.frames, "stills": [], "gain_plot": None, "histogram_plot": None,
        "metrics": None, "rows": [], "low_light": None, "videos": [], "problems": [],
    }
    metrics = _metrics_of(video)
    if video.status == "done" and video.output:
        try:
            with local_copy(video.input, options) as before, \
                    local_copy(video.output, options) as after:
                info = probe(after)
                times = seconds(info)
                duration = float(times[-1]) if len(times) else 0.0
                for share in STILL_POINTS:
                    t = duration * share
                    pair = {"t": f"{t:.2f} s"}
                    for side, path in (("before", before), ("after", after)):
                        frame = stills.resized(stills.frame_at(path, t), STILL_WIDTH)
                        pair[side] = page.add(f"img/{key}-{int(share * 100):02d}-{side}.jpg",
                                              stills.jpeg_bytes(frame))
                    section["stills"].append(pair)
                gains = rgb_gains(video)
                if gains is not None and len(gains[0]) == len(times):
                    section["gain_plot"] = page.add(f"img/{key}-gain.png",
                                                    plots.gain_plot(times, *gains))
                elif gains is not None:  # timestamps unknown: frame numbers
                    section["gain_plot"] = page.add(
                        f"img/{key}-gain.png",
                        plots.gain_plot(np.arange(len(gains[0])), *gains, xlabel="frame"))
                if metrics is None and measure:
                    metrics = video_metrics(before, after)
                    section["problems"].append("metrics measured for this report (the run "
                                               "did not record them)")
        except Exception as exc:  # noqa: BLE001 - one video's trouble stays in its section
            section["problems"].append(layout.redact(f"{type(exc).__name__}: {exc}"))
    if metrics:
        section["metrics"] = metrics
        section["rows"] = metrics_rows(metrics, video)
        section["low_light"] = bool(metrics.get("low_light"))
        histogram = metrics.get("histogram") or {}
        if histogram.get("before") and histogram.get("after"):
            section["histogram_plot"] = page.add(
                f"img/{key}-histogram.png",
                plots.histogram_plot(histogram["before"], histogram["after"]))
    links = [("output", video.output), ("preview", getattr(video, "preview", None))]
    links += [(f"comparison ({mode})", layout.compare(video.relative, mode))
              for mode in _COMPARE_MODES]
    for label, url in links:
        if url and _exists(url, options):
            section["videos"].append({"label": label, "href": _link(url, layout.report_dir),
                                      "playable": label != "output"})
    return section


def _groups(sections: list[dict[str, Any]], videos: list[Any]) -> dict[str, Any]:
    """Mean metric changes (and flicker) of the low-light videos and of the others."""
    by_input = {v.input: v for v in videos}
    out: dict[str, Any] = {}
    for name, want in (("low light", True), ("other", False)):
        members = [s for s in sections if s["metrics"] and s["low_light"] is want]
        row: dict[str, Any] = {"videos": len(members)}
        for metric in GROUP_METRICS:
            values = [s["metrics"]["change"].get(metric) for s in members]
            values = [v for v in values if v is not None]
            row[metric] = float(np.mean(values)) if values else None
        for flicker in ("model_flicker", "added_flicker"):
            values = [getattr(by_input[s["input"]], flicker, None) for s in members]
            values = [v for v in values if v is not None]
            row[flicker] = float(np.mean(values)) if values else None
        out[name] = row
    return out


def _summary(layout: Any, options: dict | None) -> dict | None:
    from nhance_batch import storage

    url = summary_url(layout)
    try:
        if not storage.exists(url, storage.options_for(url, options or {})):
            return None
        return json.loads(storage.read_bytes(url, storage.options_for(url, options or {})))
    except Exception:  # noqa: BLE001 - a missing or unreadable summary only hides a plot
        return None


def summary_url(layout: Any) -> str:
    """Where a run's summary (``JobSummary.as_dict()``) is kept for the report."""
    return layout.summary


def write_report(output: str, *, storage_options: dict | None = None,
                 manifest: str | None = None, measure_missing: bool = True) -> str:
    """Write the report of the job in ``output``; return the URL of its ``index.html``.

    Args:
        output: the job's OUTPUT (local path or store URL).
        storage_options: store options, flat or keyed by protocol.
        manifest: the manifest's location when not in ``OUTPUT/_nhance``.
        measure_missing: measure the metrics of done videos whose run did not record them.

    Raises:
        ManifestError: ``output`` holds no readable job manifest.
    """
    import jinja2

    from nhance_batch.analysis import plots
    from nhance_batch.analysis.jobfiles import job_manifest, publish_bytes
    from nhance_batch.state.manifest import DONE, FAILED

    layout, recorded = job_manifest(output, storage_options, manifest=manifest)
    options = dict(storage_options or {})
    page = _Page(title=f"nhance-batch report: {output}")
    sections = [_video_section(page, video, i, layout, options, measure_missing)
                for i, video in enumerate(recorded.videos)]
    summary = _summary(layout, options)
    job: dict[str, Any] = {
        "videos": len(recorded.videos),
        "done": sum(v.status == DONE for v in recorded.videos),
        "failed": sum(v.status == FAILED for v in recorded.videos),
        "frames": sum(v.frames or 0 for v in recorded.videos if v.status == DONE),
        "runs": [{"run": r.run, "started": r.started, "finished": r.finished, "status": r.status}
                 for r in recorded.runs],
        "throughput_plot": None, "stage_plot": None, "stage_fps": None, "stage_source": None,
        "summary_run": None,
    }
    if summary and summary.get("progress"):
        job["throughput_plot"] = page.add("img/job-throughput.png",
                                          plots.throughput_plot(summary["progress"]))
        job["summary_run"] = summary.get("run")
    stage_fps = (summary or {}).get("stage_fps") or None
    job["stage_source"] = "the last run's summary" if stage_fps else "the manifest's chunk timings"
    stage_fps = stage_fps or _stage_fps_from_chunks(recorded.videos)
    if stage_fps:
        job["stage_fps"] = {k: f"{v:.2f}" for k, v in stage_fps.items()}
        job["stage_plot"] = page.add("img/job-stages.png", plots.stage_fps_plot(stage_fps))
    groups = _groups(sections, recorded.videos)
    low_light = {"groups": groups, "plot": None, "metrics": GROUP_METRICS,
                 "threshold": 0.25, "rows": []}
    if any(g["videos"] for g in groups.values()):
        low_light["plot"] = page.add("img/job-low-light.png",
                                     plots.group_change_plot(
                                         {f"{k} ({g['videos']})": g for k, g in groups.items()
                                          if g["videos"]}, GROUP_METRICS))
    for metric in GROUP_METRICS + ("model_flicker", "added_flicker"):
        kind = "number" if metric.endswith("flicker") else "ratio"
        low_light["rows"].append({"label": metric.replace("_", " "),
                                  **{k: _fmt(g[metric], kind) for k, g in groups.items()}})

    env = jinja2.Environment(loader=jinja2.PackageLoader("nhance_batch.analysis", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html.j2").render(page=page, job=job, videos=sections,
                                                       low_light=low_light, output=output)
    for name, data in page.files.items():
        publish_bytes(data, _join(layout.report_dir, name), options)
    index = _join(layout.report_dir, "index.html")
    publish_bytes(html.encode("utf-8"), index, options)
    return index


def _join(folder: str, name: str) -> str:
    from nhance_batch import storage

    return storage.join(folder, *name.split("/"))


def open_in_browser(url: str) -> bool:
    """Open a local report in the user's browser; False when it cannot be (a store URL)."""
    import webbrowser
    from pathlib import Path

    from nhance_batch import storage

    if not storage.is_local_url(url):
        return False
    return webbrowser.open(Path(storage.local_path(url)).resolve().as_uri())
