"""Night-time footage: how the enhancer does on low-light versions of real clips.

Each clip (default: every ``*.mp4`` in ``../shared/videos`` beside the checkout, or the files
given) is read for its first ``--frames`` frames and made into a night version: decoded to
linear light, exposure cut (``--exposure``), photon shot noise (Poisson, ``--full-well``
electrons at white) and read noise (``--read-noise`` electrons, Gaussian) added with a fixed
seed, encoded back with the sRGB-like gamma and a further gamma (``--gamma`` > 1 crushes the
shadows as a phone's tone curve does), quantised to 8 bits. Both the original frames and
the night version go through the default model (DPED, ``iphone``) and temporal stabilisation
(radius 3) exactly as a job runs them, in one chunk, and the metrics of
:mod:`nhance_batch.analysis.metrics` are measured on every frame, before and after.

Printed per clip and light: mean input luminance, luminance gain, RMS contrast gain, noise
amplification (after / before noise sigma), colourfulness gain, and the flicker (mean
|gain(t+1) - gain(t)|) of the model before and after stabilisation.

``--speed`` also measures what comparisons and previews cost at 640x360 (a clip scaled to that
size, ``--speed-frames`` frames, x264 with one thread): frames per second of wall time and per
CPU-second (per core), for each comparison mode and for a preview.

    python bench/night.py                       # both shared clips, 24 frames each
    python bench/night.py --frames 12 --speed   # fewer frames, plus the rendering cost
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("NHANCE_MODELS", str(REPO.parent / "shared" / "models" / "dped"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def night_version(frames: np.ndarray, *, exposure: float, gamma: float, full_well: float,
                  read_noise: float, seed: int) -> np.ndarray:
    """Low-light frames from ``frames`` (uint8 RGB): less exposure, shot and read noise,
    a crushing tone curve; seeded, so every run makes the same clip."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        linear = srgb_to_linear(frame.astype(np.float64) / 255.0) * exposure
        electrons = rng.poisson(linear * full_well).astype(np.float64)
        electrons += rng.normal(0.0, read_noise, size=electrons.shape)
        signal = np.clip(electrons / full_well, 0.0, 1.0)
        encoded = linear_to_srgb(signal) ** gamma
        out[i] = np.clip(np.round(encoded * 255.0), 0, 255).astype(np.uint8)
    return out


def read_clip(path: str, frames: int) -> tuple[np.ndarray, list[int], Fraction]:
    from nhance_batch.analysis.frames import iter_frames
    from nhance_batch.media.probe import probe

    info = probe(path)
    n = min(frames, info.frame_count)
    got = list(iter_frames(path, info, range(n)))
    return np.stack([f for _, _, f in got]), [p for _, p, _ in got], info.time_base


def write_lossless(path: str, frames: np.ndarray, pts: list[int], time_base: Fraction) -> str:
    """FFV1 RGB in Matroska: what the metrics read back is exactly these frames."""
    import av

    with av.open(path, mode="w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "bgr0"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        for frame, stamp in zip(frames, pts, strict=True):
            video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video = video.reformat(format="bgr0")
            video.pts, video.time_base = int(stamp), time_base
            out.mux(stream.encode(video))
        out.mux(stream.encode(None))
    return path


def enhance(enhancer, frames: np.ndarray, radius: int):
    from nhance_batch.temporal import ChunkStabiliser

    stabiliser = ChunkStabiliser(frames, slice(0, len(frames)), radius)
    for start, y in enhancer.batches(frames, as_float=True):
        stabiliser.add(start, y)
    return stabiliser.result()


def evaluate(args) -> list[dict]:
    from nhance_batch.analysis.metrics import video_metrics
    from nhance_batch.config import ModelConfig
    from nhance_batch.model.enhancer import Enhancer
    from nhance_batch.temporal import added_flicker

    enhancer = Enhancer(ModelConfig(name=args.model, threads=args.threads))
    enhancer.setup()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nhance-night-") as work:
        for clip in args.clips:
            frames, pts, tb = read_clip(clip, args.frames)
            seed = args.seed + sum(map(ord, Path(clip).name))
            variants = {"normal": frames,
                        "night": night_version(frames, exposure=args.exposure, gamma=args.gamma,
                                               full_well=args.full_well,
                                               read_noise=args.read_noise, seed=seed)}
            for light, inputs in variants.items():
                start = time.perf_counter()
                result = enhance(enhancer, inputs, args.radius)
                seconds = time.perf_counter() - start
                base = os.path.join(work, f"{Path(clip).stem}-{light}")
                before = write_lossless(base + "-in.mkv", inputs, pts, tb)
                after = write_lossless(base + "-out.mkv", result.frames, pts, tb)
                # every frame measured: a fine sampling step, as many frames as there are
                m = video_metrics(before, after, every_s=1e-6, max_frames=len(pts))
                rows.append({
                    "clip": Path(clip).name, "light": light, "frames": len(pts),
                    "size": f"{frames.shape[2]}x{frames.shape[1]}",
                    "luminance_in": m["before"]["luminance"],
                    "luminance_out": m["after"]["luminance"],
                    "luminance_gain": m["change"]["luminance_gain"],
                    "contrast_gain": m["change"]["contrast_gain"],
                    "noise_in": m["before"]["noise"], "noise_out": m["after"]["noise"],
                    "noise_amplification": m["change"]["noise_amplification"],
                    "colourfulness_gain": m["change"]["colourfulness_gain"],
                    "crushed_shadows_in": m["before"]["crushed_shadows"],
                    "crushed_shadows_out": m["after"]["crushed_shadows"],
                    "low_light": m["low_light"],
                    "flicker_model": added_flicker(result.gains_before),
                    "flicker_stabilised": added_flicker(result.gains_after),
                    "enhance_fps": len(pts) / seconds,
                })
                print(f"  {Path(clip).name} {light}: {len(pts)} frames enhanced in "
                      f"{seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print("| clip | light | frames | input luminance | luminance gain | contrast gain | "
          "noise sigma in -> out | noise amplification | colourfulness gain | "
          "flicker model -> stabilised |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} ({r['size']}) | {r['light']}{' (low light)' if r['low_light'] else ''}"
              f" | {r['frames']} | {r['luminance_in']:.3f} | x{r['luminance_gain']:.2f} | "
              f"x{r['contrast_gain']:.2f} | {r['noise_in']:.4f} -> {r['noise_out']:.4f} | "
              f"x{r['noise_amplification']:.2f} | x{r['colourfulness_gain']:.2f} | "
              f"{r['flicker_model']:.4f} -> {r['flicker_stabilised']:.4f} |")
    by_clip: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_clip.setdefault(r["clip"], {})[r["light"]] = r
    print()
    print("night / normal ratios (same clip): noise amplification, model flicker")
    for clip, pair in by_clip.items():
        if "night" in pair and "normal" in pair:
            n, d = pair["normal"], pair["night"]
            print(f"  {clip}: noise amplification x{d['noise_amplification'] / n['noise_amplification']:.2f}, "
                  f"model flicker x{d['flicker_model'] / max(n['flicker_model'], 1e-12):.2f}, "
                  f"stabilised flicker x{d['flicker_stabilised'] / max(n['flicker_stabilised'], 1e-12):.2f}")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def speed(args) -> list[dict]:
    """Comparison and preview rendering at 640x360: wall fps and fps per CPU-second."""
    from PIL import Image

    from nhance_batch.analysis.browser import BrowserEncoding, open_browser_video
    from nhance_batch.analysis.compare import render_compare
    from nhance_batch.analysis.preview import render_preview

    frames, pts, tb = read_clip(args.clips[0], args.speed_frames)
    scaled = np.stack([np.asarray(Image.fromarray(f).resize((640, 360), Image.Resampling.BILINEAR))
                       for f in frames])
    one_thread = BrowserEncoding(threads=1)
    results = []
    with tempfile.TemporaryDirectory(prefix="nhance-speed-") as work:
        before, after = os.path.join(work, "before.mp4"), os.path.join(work, "after.mp4")
        # inputs as a job sees them: H.264 source and H.264 output
        for path, pictures in ((before, scaled),
                               (after, np.clip(scaled.astype(np.int16) + 25, 0, 255).astype(np.uint8))):
            with open_browser_video(path, width=640, height=360, time_base=tb,
                                    encoding=one_thread) as video:
                for frame, stamp in zip(pictures, pts, strict=True):
                    video.write(frame, stamp)
        lossless = write_lossless(os.path.join(work, "after.mkv"), scaled, pts, tb)
        jobs = [(f"compare {mode}", lambda m=mode: render_compare(
                    before, after, os.path.join(work, f"c-{m}.mp4"), mode=m, encoding=one_thread))
                for mode in ("split", "swipe", "side-by-side")]
        jobs.append(("preview of H.264", lambda: render_preview(
            after, os.path.join(work, "p1.mp4"), encoding=one_thread)))
        jobs.append(("preview of FFV1", lambda: render_preview(
            lossless, os.path.join(work, "p2.mp4"), encoding=one_thread)))
        for name, job in jobs:
            job()  # warm-up (imports, first-use costs)
            wall, cpu = time.perf_counter(), _cpu()
            job()
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
            results.append({"what": name, "frames": len(pts), "wall_fps": len(pts) / wall,
                            "fps_per_core": len(pts) / cpu, "cores_used": cpu / wall})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", help="clips (default: ../shared/videos/*.mp4)")
    parser.add_argument("--frames", type=int, default=24, help="frames per clip")
    parser.add_argument("--model", default="iphone")
    parser.add_argument("--radius", type=int, default=3, help="temporal radius")
    parser.add_argument("--threads", type=int, default=0, help="math threads (0: all)")
    parser.add_argument("--exposure", type=float, default=0.08,
                        help="linear exposure factor (0.08: about -3.6 EV)")
    parser.add_argument("--gamma", type=float, default=1.25, help="extra tone-curve gamma")
    parser.add_argument("--full-well", type=float, default=1200.0,
                        help="electrons at white (shot noise)")
    parser.add_argument("--read-noise", type=float, default=2.0, help="read noise, electrons")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--speed", action="store_true",
                        help="also measure comparison and preview rendering at 640x360")
    parser.add_argument("--speed-frames", type=int, default=60)
    parser.add_argument("--skip-model", action="store_true", help="only --speed")
    parser.add_argument("--json", dest="json_out", default=None, help="also write JSON here")
    args = parser.parse_args()
    if not args.clips:
        args.clips = sorted(str(p) for p in (REPO.parent / "shared" / "videos").glob("*.mp4"))
    if not args.clips:
        parser.error("no clips given and none in ../shared/videos")
    out: dict = {"settings": {k: v for k, v in vars(args).items() if k != "json_out"}}
    if not args.skip_model:
        out["night"] = evaluate(args)
        print_table(out["night"])
    if args.speed:
        out["speed"] = speed(args)
        print()
        print("| rendering at 640x360 (x264 veryfast, 1 thread) | frames | fps (wall) | "
              "fps per core | cores used |")
        print("|---|---|---|---|---|")
        for r in out["speed"]:
            print(f"| {r['what']} | {r['frames']} | {r['wall_fps']:.1f} | "
                  f"{r['fps_per_core']:.1f} | {r['cores_used']:.2f} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
