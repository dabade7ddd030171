#!/usr/bin/env python
"""Media throughput on a GPU node: can its CPUs decode and encode as fast as one GPU enhances?
A benchmark, not a test; PyAV and numpy only (``pip install av numpy`` is all it needs).

For 1280x720 (``--size``) synthetic frames it times, in frames per second:

* libx264 (preset medium, CRF 18, yuv420p: the pipeline's defaults) with FFmpeg's automatic
  threads, one encoder; then P encoders in parallel processes, one thread each and automatic
  threads, for P in ``--procs`` (1, 4, 8, 16): the aggregate rate a node reaches with
  P chunks encoding at once;
* H.264 decode of that stream, one decoder with automatic threads and one with one thread;
* h264_nvenc (if the driver exposes NVENC): one encoder, or the error.

Prints a Markdown table; ``--out`` writes JSON. About 1-2 minutes on 16 cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor


def frames(width: int, height: int, n: int):
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    out = []
    for i in range(n):
        r = ((x + 3 * i) % 256).astype(np.uint8)
        g = ((y + 2 * i) % 256).astype(np.uint8)
        b = (((x + y) // 2 + i) % 256).astype(np.uint8)
        out.append(np.dstack([r, g, b]))
    return np.stack(out)


def encode(array, codec: str, threads: int) -> tuple[float, bytes]:
    import av

    buf = io.BytesIO()
    start = time.perf_counter()
    with av.open(buf, "w", format="mp4") as container:
        options = {"crf": "18", "preset": "medium"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=30, options=options)
        stream.width, stream.height, stream.pix_fmt = array.shape[2], array.shape[1], "yuv420p"
        stream.codec_context.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        for i, a in enumerate(array):
            frame = av.VideoFrame.from_ndarray(a, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return time.perf_counter() - start, buf.getvalue()


def decode(data: bytes, threads: int) -> tuple[float, int]:
    import av

    start = time.perf_counter()
    n = 0
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return time.perf_counter() - start, n


def _worker(args):
    width, height, n, threads = args
    array = frames(width, height, n)
    seconds, _ = encode(array, "libx264", threads)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--procs", default="1,4,8,16")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    n = args.frames
    import av

    result = {"size": args.size, "frames": n, "cpus": os.cpu_count(), "av": av.__version__,
              "ffmpeg": av.library_versions.get("libavcodec"), "rows": []}

    def row(what, fps, note=""):
        result["rows"].append({"what": what, "fps": fps, "note": note})
        print(f"{what}: {fps:.1f} fps {note}", flush=True)

    array = frames(width, height, n)
    encode(array[:8], "libx264", 0)  # warm-up
    seconds, data = encode(array, "libx264", 0)
    row("libx264 medium crf18, 1 encoder, auto threads", n / seconds)
    seconds, _ = encode(array, "libx264", 1)
    row("libx264 medium crf18, 1 encoder, 1 thread", n / seconds)
    for threads, name in ((0, "auto threads"), (1, "1 thread")):
        seconds, count = decode(data, threads)
        row(f"h264 decode to RGB, {name}", count / seconds)
    for procs in (int(p) for p in args.procs.split(",")):
        for threads, name in ((1, "1 thread each"), (0, "auto threads each")):
            with ProcessPoolExecutor(procs) as pool:
                start = time.perf_counter()
                list(pool.map(_worker, [(width, height, n, threads)] * procs))
                wall = time.perf_counter() - start
            row(f"libx264, {procs} encoders in parallel, {name}", procs * n / wall,
                "(aggregate; includes making the frames)")
    try:
        encode(array[:8], "h264_nvenc", 0)
        seconds, _ = encode(array, "h264_nvenc", 0)
        row("h264_nvenc, 1 encoder", n / seconds)
    except Exception as exc:  # noqa: BLE001
        result["nvenc_error"] = f"{type(exc).__name__}: {exc}"
        print(f"h264_nvenc: unavailable ({result['nvenc_error']})", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
