"""The CRF per encoder that matches x264 CRF 18's quality (``media.encode.DEFAULT_CRF``).

Encodes the sample clips with each encoder over a range of CRFs and prints the PSNR (Y, U and
V planes together) of the decoded result against the frames given to the encoder, and the
size. Frames are cropped off the source's 16x16 block grid (at x=3, y=5) so that no encoder
gains from re-finding H.264's own block edges: enhanced frames are new pictures to every
encoder. Run: ``python bench/codec_quality.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

# the sample clips in the shared folder beside the checkout
VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
CLIPS = [(str(VIDEOS / "bikes.mp4"), 100, 632, 264),
         (str(VIDEOS / "carphone.mp4"), 120, 168, 136)]
GRID = {"libx264": [18], "libx265": [17, 18, 19, 20, 21], "libsvtav1": [20, 22, 23, 24, 26],
        "libvpx-vp9": [22, 24, 25, 26, 28]}
# the options nhance_batch.media.encode gives each encoder besides the CRF
OPTIONS = {"libx264": {"preset": "medium"},
           "libx265": {"preset": "medium", "x265-params": "log-level=error"},
           "libsvtav1": {}, "libvpx-vp9": {"b": "0", "row-mt": "1"}}


def shifted_frames(path: str, count: int, width: int, height: int) -> list[np.ndarray]:
    import av

    out = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24")[5:5 + height, 3:3 + width])
            yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            out.append(yuv.to_ndarray())
            if len(out) == count:
                break
    return out


def round_trip(frames: list[np.ndarray], codec: str, crf: int, width: int,
               height: int) -> tuple[int, list[np.ndarray]]:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=25, options={"crf": str(crf), **OPTIONS[codec]})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, planes in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    size = buf.tell()
    buf.seek(0)
    with av.open(buf) as container:
        decoded = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    return size, decoded


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = ((np.stack(a).astype(np.float64) - np.stack(b).astype(np.float64)) ** 2).mean()
    return float(10 * np.log10(255**2 / mse))


def main() -> None:
    for path, count, width, height in CLIPS:
        frames = shifted_frames(path, count, width, height)
        print(f"{path} {width}x{height}, {len(frames)} frames", flush=True)
        for codec, crfs in GRID.items():
            for crf in crfs:
                size, decoded = round_trip(frames, codec, crf, width, height)
                print(f"  {codec:11s} CRF {crf:2d}: {psnr(frames, decoded):6.2f} dB "
                      f"{size / 1024:8.1f} KiB", flush=True)


if __name__ == "__main__":
    main()
