"""What HDR costs and how close it stays to the SDR result.

``cost``: seconds per 1920x1080 frame on this machine of the colour mapping, forward (HDR
code values -> the model's SDR rendition) and back (the model's output -> HDR code values,
with the residual), each compiled as the enhancer compiles it, against the model alone.

``psnr``: a real SDR clip put into HDR (PQ and HLG, BT.2020, at the BT.2408 reference white,
10-bit), enhanced as HDR and seen as SDR (forward-mapped), against the SDR pipeline's output
on its 8-bit rendition: PSNR in dB over 8-bit values.

    PYTHONPATH=. NHANCE_MODELS=... python bench/hdr_colour.py cost
    PYTHONPATH=. NHANCE_MODELS=... python bench/hdr_colour.py psnr ../shared/videos/carphone.mp4
"""

from __future__ import annotations

import argparse
import time

import numpy as np

PQ, HLG = 16, 18


def _best(fn, rounds: int) -> float:
    fn()  # compile
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cost(rounds: int) -> None:
    import tensorflow as tf
    from keras import ops

    from nhance_batch.config import ModelConfig
    from nhance_batch.model import colour
    from nhance_batch.model.enhancer import Enhancer

    shape = (1, 1080, 1920, 3)
    frames = np.random.default_rng(0).integers(0, 65535, shape, dtype=np.uint16)
    spec = tf.TensorSpec(shape, tf.uint16)
    forward = tf.function(lambda x: colour.rendition(ops.cast(x, "float32") / 65535.0, PQ),
                          input_signature=[spec])
    enhancer = Enhancer(ModelConfig(batch_size=1, jit="off"))
    outputs = forward(frames).numpy()
    print(f"1920x1080, one frame, best of {rounds} (TensorFlow {tf.__version__}; forward: graph "
          "mode, as inside the model's function; back: XLA, as the enhancer runs it)")
    for name, fn in (("forward (rendition)", lambda: forward(frames).numpy()),
                     ("back (restore)", lambda: enhancer.restore(frames, outputs, PQ)),
                     ("back, strength 0.5", lambda: enhancer.restore(frames, outputs, PQ, 0.5))):
        print(f"  {name:24s} {_best(fn, rounds) * 1000:8.1f} ms")
    model = _best(lambda: list(enhancer.batches(frames, as_float=True)), max(1, rounds // 3))
    hdr = _best(lambda: list(enhancer.hdr_batches(frames, PQ)), max(1, rounds // 3))
    print(f"  {'model alone':24s} {model * 1000:8.1f} ms")
    print(f"  {'rendition + model':24s} {hdr * 1000:8.1f} ms")


def _hdr_clip(sdr: np.ndarray, transfer: int) -> np.ndarray:
    """The SDR frames as 10-bit HDR code values (in uint16) of ``transfer``, through a real
    HEVC 10-bit encode and decode."""
    import tempfile

    import av

    from nhance_batch.media import decode_all, probe
    from tests.media.hdrmedia import hdr_codes

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/hdr.mp4"
        with av.open(path, "w") as out:
            video = out.add_stream("libx265", rate=25, options={
                "crf": "12", "preset": "fast", "x265-params": "log-level=error"})
            video.width, video.height, video.pix_fmt = sdr.shape[2], sdr.shape[1], "yuv420p10le"
            cc = video.codec_context
            cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 9, transfer, 9, 1
            for i, frame in enumerate(sdr):
                codes = hdr_codes((frame / 255.0) ** 2.4, transfer, highlight=False)
                rgb = np.round(np.clip(codes, 0, 1) * 65535).astype(np.uint16)
                picture = av.VideoFrame.from_ndarray(rgb, format="rgb48le").reformat(
                    format="yuv420p10le", dst_colorspace=9, dst_color_range="MPEG")
                picture.pts = i
                out.mux(video.encode(picture))
            out.mux(video.encode(None))
        return decode_all(path, probe(path)).frames


def psnr(path: str, frames: int) -> None:
    from nhance_batch.config import ModelConfig
    from nhance_batch.media import decode_all, probe
    from nhance_batch.model import colour
    from nhance_batch.model.enhancer import Enhancer
    from nhance_batch.pipeline.grade import enhance_chunk

    sdr = decode_all(path, probe(path)).frames[:frames]
    enhancer = Enhancer(ModelConfig(batch_size=1, jit="off"))
    for transfer, name in ((PQ, "PQ"), (HLG, "HLG")):
        hdr = _hdr_clip(sdr, transfer)
        rendition = np.asarray(colour.rendition(hdr.astype(np.float32) / 65535, transfer))
        rendition8 = np.round(rendition * 255).astype(np.uint8)
        own = slice(0, len(hdr))
        out = enhance_chunk(enhancer, hdr, own, 3, transfer=transfer).frames
        seen = np.asarray(colour.rendition(out.astype(np.float32) / 65535, transfer))
        sdr_run = enhance_chunk(enhancer, rendition8, own, 3).frames
        sdr_mode = enhance_chunk(enhancer, hdr, own, 3, transfer=transfer, hdr="sdr").frames
        print(f"{name}: {len(hdr)} frames {hdr.shape[2]}x{hdr.shape[1]}: HDR output seen as "
              f"SDR vs the SDR run of its 8-bit rendition: "
              f"{_psnr(np.round(seen * 255), sdr_run):.2f} dB; --hdr sdr vs that SDR run: "
              f"{_psnr(sdr_mode, sdr_run):.2f} dB; the enhancement itself (SDR run vs its "
              f"input): {_psnr(sdr_run, rendition8):.2f} dB")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("cost").add_argument("--rounds", type=int, default=5)
    p = sub.add_parser("psnr")
    p.add_argument("video")
    p.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    if args.what == "cost":
        cost(args.rounds)
    else:
        psnr(args.video, args.frames)


if __name__ == "__main__":
    main()
