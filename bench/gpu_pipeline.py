"""The whole pipeline on one GPU with JAX: does the CPU side keep the enhancer busy?

Runs on a GPU machine that has JAX with CUDA, numpy, PyAV, Keras 3 and pydantic (see
bench/README.md for what to install); it needs neither TensorFlow nor Ray, and imports this
project from the checkout it sits in. On a 720p clip made on the spot (moving, noisy
gradients, H.264, keyframe every 2 s) it measures, for float32 and for bfloat16:

* **enhancer-only fps**: the chunks' frames (context included), decoded beforehand, through the
  project's Enhancer and temporal stabiliser, in this process, nothing else running;
* **end-to-end fps**: the same chunks decoded, enhanced + stabilised, and encoded with the
  pipeline's encoder settings (libx264 CRF 18 preset medium by default; ``--codec auto`` tries
  NVENC first) into parts, which are then assembled into the output video: decoding and encoding
  run in a pool of worker processes, one per CPU but one (chunks travel through shared memory),
  while this process keeps the GPU busy, with enough chunks decoded ahead that it never waits
  when the CPUs keep up; frames over the wall time from the first decode to the last part;
* their **ratio** (goal: >= 0.85), the enhancer's **busy share** (its compute seconds over the
  end-to-end wall time), and **per-stage fps** (each stage's frames over its seconds, per
  worker, and over the run's wall time for all workers together);
* the **PSNR** of bfloat16 output against float32 on the clip's first chunk.

When Ray and the project's other dependencies are importable too (``pip install -e
'.[jax-gpu]'``), ``--real`` also runs the real job (``nhance_batch.pipeline.driver.run_job`` on a
local Ray, ``KERAS_BACKEND=jax``) on the same clip and reports its summary's fps and busy share.

Prints a table; ``--out FILE`` writes JSON (rewritten after each stage). Default: 20 s of
1280x720 at 30 fps, both precisions, about 2-3 minutes on one H100 (mostly XLA compiles).
``--quick`` is a CPU smoke test (160x96, 48 frames).

    KERAS_BACKEND=jax python3 bench/gpu_pipeline.py --out gpu_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DEFAULT_WEIGHTS = ROOT / "bench" / "_weights" / "iphone_orig"


# -- the clip -----------------------------------------------------------------------------------
def make_clip(path: str, width: int, height: int, frames: int, fps: int = 30) -> None:
    """A phone-like H.264 clip: smooth moving gradients with sensor noise, GOP of 2 s."""
    import av

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([128 + 90 * np.sin(x / width * 2 * np.pi),
                     128 + 90 * np.cos(y / height * 2 * np.pi),
                     128 + 90 * np.sin((x + y) / (width + height) * 2 * np.pi)], -1)
    rng = np.random.default_rng(0)
    noise = [rng.normal(0, 5, base.shape).astype(np.float32) for _ in range(7)]
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "veryfast",
                                                             "g": str(2 * fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_type = "AUTO"
        for i in range(frames):
            shift = (4 * i) % width
            img = np.roll(base, shift, axis=1) * (0.85 + 0.15 * np.sin(i / 25)) + noise[i % 7]
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), "rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


# -- worker processes (decode, encode) ------------------------------------------------------------
def _attach(name: str):
    from multiprocessing import shared_memory

    # the main process owns and unlinks every block (the workers share its resource tracker)
    return shared_memory.SharedMemory(name=name)


def _warm(_: int = 0) -> int:
    import av  # noqa: F401

    import nhance_batch.media  # noqa: F401
    return os.getpid()


def _decode(path, info, chunk, block: str) -> tuple[int, list[int], float]:
    """Decode ``chunk`` (context included) into the shared block; (frames, pts, seconds)."""
    from nhance_batch.media import decode_chunk

    start = time.perf_counter()
    decoded = decode_chunk(path, info, chunk)
    shm = _attach(block)
    view = np.ndarray(decoded.frames.shape, decoded.frames.dtype, buffer=shm.buf)
    view[:] = decoded.frames
    del view
    shm.close()
    return len(decoded.frames), [int(p) for p in decoded.pts], time.perf_counter() - start


def _encode(block: str, shape, pts, info, dest: str, encode) -> tuple[float, int]:
    """Encode the frames in the shared block into the part ``dest``; (seconds, bytes)."""
    from nhance_batch.media import encode_part

    start = time.perf_counter()
    shm = _attach(block)
    frames = np.ndarray(shape, np.uint8, buffer=shm.buf)
    encode_part(frames, np.asarray(pts, np.int64), info, dest, encode)
    del frames
    shm.close()
    return time.perf_counter() - start, os.path.getsize(dest)


class Blocks:
    """A fixed set of shared-memory blocks, each big enough for one chunk's frames."""

    def __init__(self, count: int, nbytes: int) -> None:
        from multiprocessing import shared_memory

        self.all = [shared_memory.SharedMemory(create=True, size=max(1, nbytes))
                    for _ in range(count)]
        self.free = list(self.all)

    def take(self):
        return self.free.pop()

    def give(self, shm) -> None:
        self.free.append(shm)

    def close(self) -> None:
        for shm in self.all:
            shm.close()
            shm.unlink()


# -- the measurements ------------------------------------------------------------------------------
def load_weights(path: Path, notes: list[str]):
    from nhance_batch.model.dped import DPEDWeights

    if Path(str(path) + ".index").is_file():
        return DPEDWeights.load(path), str(path)
    notes.append(f"no checkpoint at {path}: random weights (speed is the same; PSNR is not "
                 "the real model's)")
    return DPEDWeights.random(), "random"


def enhance_chunk(enhancer, frames: np.ndarray, chunk, radius: int):
    """The enhance stage's work on one chunk: DPED pass by pass, then stabilisation."""
    from nhance_batch.temporal import ChunkStabiliser

    own = slice(chunk.start - chunk.ctx_start, chunk.end - chunk.ctx_start)
    stabiliser = ChunkStabiliser(frames, own, radius, dtype=frames.dtype)
    for first, y in enhancer.batches(frames, as_float=True):
        stabiliser.add(first, y)
    return stabiliser.result().frames


def enhancer_only(enhancer, decoded: list[np.ndarray], chunks, radius: int) -> dict:
    enhance_chunk(enhancer, decoded[0], chunks[0], radius)  # compile, warm up
    start = time.perf_counter()
    frames = 0
    for arr, chunk in zip(decoded, chunks):
        enhance_chunk(enhancer, arr, chunk, radius)
        frames += len(arr)
    seconds = time.perf_counter() - start
    own = sum(c.end - c.start for c in chunks)
    return {"seconds": round(seconds, 3), "frames_enhanced": frames,
            "fps": round(own / seconds, 2), "fps_enhanced_frames": round(frames / seconds, 2)}


def end_to_end(pool, workers: int, enhancer, clip: str, info, chunks, radius: int, encode,
               workdir: str, ahead: int) -> dict:
    """Decode in the pool (``ahead`` chunks in flight), enhance here, encode in the pool."""
    from nhance_batch.media import assemble

    max_ctx = max(c.ctx_end - c.ctx_start for c in chunks)
    max_own = max(c.end - c.start for c in chunks)
    frame_bytes = info.width * info.height * 3
    in_blocks = Blocks(ahead, max_ctx * frame_bytes)
    out_blocks = Blocks(workers + 2, max_own * frame_bytes)
    stage = {"decode": [0, 0.0], "enhance": [0, 0.0], "encode": [0, 0.0]}
    parts = [os.path.join(workdir, f"part{c.index:05d}.mp4") for c in chunks]
    decodes, encodes, waits = {}, {}, 0.0
    next_decode = 0
    start = time.perf_counter()
    try:
        def submit_decodes():
            nonlocal next_decode
            while next_decode < len(chunks) and in_blocks.free:
                block = in_blocks.take()
                chunk = chunks[next_decode]
                decodes[next_decode] = (pool.submit(_decode, clip, info, chunk, block.name),
                                        block)
                next_decode += 1

        def collect_encodes(block_needed: bool):
            done = [f for f in encodes if f.done()]
            if block_needed and not done and not out_blocks.free:
                done, _ = wait(list(encodes), return_when=FIRST_COMPLETED)
            for future in done:
                seconds, _ = future.result()
                block, n = encodes.pop(future)
                stage["encode"][0] += n
                stage["encode"][1] += seconds
                out_blocks.give(block)

        submit_decodes()
        for i, chunk in enumerate(chunks):
            t = time.perf_counter()
            future, block = decodes.pop(i)
            n, pts, seconds = future.result()
            waits += time.perf_counter() - t
            stage["decode"][0] += n
            stage["decode"][1] += seconds
            frames = np.ndarray((n, info.height, info.width, 3), np.uint8, buffer=block.buf)
            t = time.perf_counter()
            result = enhance_chunk(enhancer, frames, chunk, radius)
            stage["enhance"][0] += n
            stage["enhance"][1] += time.perf_counter() - t
            del frames
            in_blocks.give(block)
            submit_decodes()
            collect_encodes(block_needed=True)
            out = out_blocks.take()
            view = np.ndarray(result.shape, np.uint8, buffer=out.buf)
            view[:] = result
            del view
            own_pts = pts[chunk.start - chunk.ctx_start:chunk.end - chunk.ctx_start]
            encodes[pool.submit(_encode, out.name, result.shape, own_pts, info, parts[i],
                                encode)] = (out, len(result))
        while encodes:
            collect_encodes(block_needed=True)
        wall = time.perf_counter() - start
    finally:
        in_blocks.close()
        out_blocks.close()
    t = time.perf_counter()
    final = os.path.join(workdir, "out.mp4")
    assemble(clip, info, parts, final, encode)
    assemble_s = time.perf_counter() - t
    frames = sum(c.end - c.start for c in chunks)
    per_stage = {name: {"frames": n, "seconds": round(s, 3),
                        "fps_per_worker": round(n / s, 2) if s else None,
                        "fps_over_wall": round(n / wall, 2)}
                 for name, (n, s) in stage.items()}
    return {"wall_s": round(wall, 3), "fps": round(frames / wall, 2),
            "busy_share": round(stage["enhance"][1] / wall, 4),
            "enhancer_waited_for_decode_s": round(waits, 3), "stages": per_stage,
            "assemble_s": round(assemble_s, 3), "output_bytes": os.path.getsize(final)}


def psnr(a: np.ndarray, b: np.ndarray) -> float | str:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return "inf" if mse == 0 else round(10 * np.log10(1.0 / mse), 2)


def real_job(clip: str, workdir: str, precision: str, codec: str, preset: str,
             chunk_frames: int) -> dict:
    """The real job on a local Ray (needs the project's full dependencies)."""
    from nhance_batch.config import run_config
    from nhance_batch.pipeline.driver import run_job

    config = run_config(clip, os.path.join(workdir, f"real-{precision}"), precision=precision,
                        codec=codec, preset=preset, chunk_frames=chunk_frames)
    summary = run_job(config, executor="ray")
    data = summary.as_dict()
    return {"seconds": data.get("seconds"), "frames": data.get("frames"),
            "fps": round(data["frames"] / data["seconds"], 2) if data.get("seconds") else None,
            "stage_fps": data.get("stage_fps"), "enhancer_busy": data.get("enhancer_busy")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--seconds", type=float, default=20.0, help="clip length")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--chunk-frames", type=int, default=0,
                        help="0: the pipeline's default for the frame size")
    parser.add_argument("--radius", type=int, default=3)
    parser.add_argument("--codec", default="libx264", help="libx264 (default), auto, ...")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--workers", type=int, default=0,
                        help="decode/encode processes (0: one per CPU but one)")
    parser.add_argument("--ahead", type=int, default=0,
                        help="chunks decoded ahead (0: workers + 2)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--real", action="store_true",
                        help="also run the real job on Ray (needs the full install)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke test: tiny clip")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.size, args.seconds, args.fps, args.batch = "160x96", 2.0, 24, 2
        args.chunk_frames = args.chunk_frames or 16
    width, height = (int(v) for v in args.size.lower().split("x"))
    frames_total = int(round(args.seconds * args.fps))
    workers = args.workers or max(1, (os.cpu_count() or 2) - 1)
    ahead = args.ahead or workers + 2
    notes: list[str] = []
    report: dict = {"host": platform.node(), "cpus": os.cpu_count(), "workers": workers,
                    "size": f"{width}x{height}", "frames": frames_total, "notes": notes,
                    "runs": []}

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(report, indent=2, default=str))

    # the pool first: its processes must not inherit an initialised GPU runtime
    import multiprocessing

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(_warm, range(workers)))

    import jax
    import keras

    from nhance_batch.config import ChunkConfig, EncodeConfig, ModelConfig
    from nhance_batch.media import decode_chunk, plan_chunks, probe
    from nhance_batch.media.encode import resolve_codec
    from nhance_batch.model.enhancer import Enhancer

    if keras.backend.backend() != "jax":
        raise SystemExit("run with KERAS_BACKEND=jax")
    device = jax.devices()[0]
    report.update(device=getattr(device, "device_kind", str(device)), jax=jax.__version__,
                  platform=device.platform)
    if device.platform != "gpu":
        notes.append(f"no GPU: JAX runs on {device.platform}")
    encode, codec_note = resolve_codec(EncodeConfig(codec=args.codec, crf=args.crf,
                                                    preset=args.preset))
    report["codec"] = encode.codec
    if codec_note:
        notes.append(codec_note)
    weights, report["weights"] = load_weights(args.weights, notes)

    with tempfile.TemporaryDirectory(prefix="nhance-gpu-") as workdir:
        clip = os.path.join(workdir, "clip.mp4")
        t = time.perf_counter()
        make_clip(clip, width, height, frames_total, args.fps)
        report["clip_s"] = round(time.perf_counter() - t, 2)
        info = probe(clip)
        chunk_config = ChunkConfig(chunk_frames=args.chunk_frames, overlap=args.radius)
        chunk_frames = chunk_config.frames_for(width, height)
        chunks = plan_chunks(info.frame_count, chunk_frames, args.radius)
        report.update(chunk_frames=chunk_frames, chunks=len(chunks))
        decoded = [decode_chunk(clip, info, c).frames for c in chunks]
        first_outputs = {}
        for precision in args.precisions.split(","):
            model = ModelConfig(precision=precision, batch_size=args.batch, jit="on")
            enhancer = Enhancer(model, weights=weights)
            enhancer.setup()
            t = time.perf_counter()
            first_outputs[precision] = enhancer(decoded[0][:args.batch], as_float=True)
            compile_s = time.perf_counter() - t
            only = enhancer_only(enhancer, decoded, chunks, args.radius)
            parts_dir = os.path.join(workdir, precision)
            os.makedirs(parts_dir)
            e2e = end_to_end(pool, workers, enhancer, clip, info, chunks, args.radius, encode,
                             parts_dir, ahead)
            run = {"precision": precision, "compile_s": round(compile_s, 2),
                   "enhancer_only": only, "end_to_end": e2e,
                   "ratio": round(e2e["fps"] / only["fps"], 3)}
            report["runs"].append(run)
            save()
            enhancer.teardown()
        if "float32" in first_outputs and "bfloat16" in first_outputs:
            report["bf16_vs_f32_psnr_db"] = psnr(first_outputs["bfloat16"],
                                                 first_outputs["float32"])
        if args.real:
            report["real"] = {}
            for precision in args.precisions.split(","):
                try:
                    report["real"][precision] = real_job(clip, workdir, precision, encode.codec,
                                                         args.preset, args.chunk_frames)
                except Exception as exc:  # noqa: BLE001 - reported, not fatal
                    report["real"][precision] = {"error": f"{type(exc).__name__}: {exc}"}
                save()
    pool.shutdown()
    save()
    print_report(report)
    return 0


def print_report(report: dict) -> None:
    print(f"\n{report.get('device')} (JAX {report.get('jax')}), {report['cpus']} CPUs, "
          f"{report['workers']} decode/encode workers; {report['size']}, {report['frames']} "
          f"frames in {report.get('chunks')} chunks of {report.get('chunk_frames')}; "
          f"codec {report.get('codec')}")
    print("| precision | enhancer-only fps | end-to-end fps | ratio | busy share | decode fps "
          "(per worker / over wall) | enhance fps | encode fps (per worker / over wall) |")
    print("|---|---|---|---|---|---|---|---|")
    for run in report["runs"]:
        e2e, st = run["end_to_end"], run["end_to_end"]["stages"]
        print(f"| {run['precision']} | {run['enhancer_only']['fps']} | {e2e['fps']} | "
              f"{run['ratio']} | {e2e['busy_share']} | {st['decode']['fps_per_worker']} / "
              f"{st['decode']['fps_over_wall']} | {st['enhance']['fps_per_worker']} | "
              f"{st['encode']['fps_per_worker']} / {st['encode']['fps_over_wall']} |")
    if "bf16_vs_f32_psnr_db" in report:
        print(f"bfloat16 vs float32 PSNR: {report['bf16_vs_f32_psnr_db']} dB")
    for precision, real in (report.get("real") or {}).items():
        print(f"real job ({precision}): {real}")
    for note in report["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
