"""What a job would do, before it runs: per video its frames, size, chunks and work, the inputs
that would fail, its output size, and how long it would take here and on GPUs.

Inputs are listed, fingerprinted and probed by the same code as a run's driver (the listing,
:func:`~nhance_batch.pipeline.stages.probe_stage` with the job's limits, the job's chunk
planning through :meth:`~nhance_batch.config.ChunkConfig.frames_for` and
:func:`~nhance_batch.media.plan_chunks`), so the frame and chunk counts are the run's. The
probe decodes nothing (it reads packet timestamps); only the output-size sample decodes the
first few frames of the first usable input (:mod:`nhance_batch.estimate.sizing`).

Work is counted where it is spent: the enhancer runs every frame a chunk decodes (its own frames
and the context frames on each side), at 2 x 399,744 FLOP per pixel (:data:`TFLOP` figures);
decoding covers the same frames, encoding only the chunks' own frames.

Times follow :mod:`nhance_batch.estimate.timing`: start-up (the command, Ray, the enhancer
actor, each frame size's first call) plus the chunks' work. Here, the work is at the
calibration's rates (:mod:`nhance_batch.estimate.calibration`; the enhancer's at the video's
frame size) and adds up, the stages sharing the cores; on N GPUs of a kind, at the package's
measured rates (:mod:`nhance_batch.rates`), with the chunks spread over the GPUs as
the driver hands them out, so that the parallelism is bounded by the chunks there are.

The output size is the chosen encoder's bytes per pixel on the job's own frames
(:mod:`nhance_batch.estimate.sizing`), not the input's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Union

from nhance_batch.config import ChunkConfig, EncodeConfig, LimitsConfig, ModelConfig
from nhance_batch.estimate.timing import (GPU_ACTOR_START_S, GPU_SHAPE_S, ChunkWork,
                                          cpu_seconds, cpu_share, gpu_seconds, run_overhead)
from nhance_batch.model.dped import FLOPS_PER_PIXEL

if TYPE_CHECKING:
    from nhance_batch.estimate.calibration import Calibration
    from nhance_batch.rates import RateTable
    from nhance_batch.estimate.sizing import SizeSample
    from nhance_batch.media.probe import VideoInfo
    from nhance_batch.pipeline.stages import Failure
    from nhance_batch.storage import StoredVideo

#: This machine's calibration, or a callable that measures (or reads) it only when called.
CalibrationSource = Union["Calibration", Callable[[], "Calibration"], None]


@dataclass
class VideoPlan:
    """One input: what the run would do with it, or why it would fail (``error``)."""

    input: str
    relative: str
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    chunks: int | None = None
    chunk_frames: int | None = None
    enhanced_frames: int | None = None  # own frames plus every chunk's context frames
    tflop: float | None = None
    input_bytes: int | None = None
    output_bytes: int | None = None
    seconds_here: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class JobPlan:
    """The plan of a whole job (:meth:`as_dict` is what ``plan --json`` prints)."""

    videos: list[VideoPlan]
    total: dict
    calibration: dict | None
    gpu_estimates: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(not v.ok for v in self.videos)

    @property
    def exit_code(self) -> int:
        """0 when every input is usable, 1 when some are not."""
        return 1 if self.failed else 0

    def as_dict(self) -> dict:
        return {"videos": [asdict(v) for v in self.videos], "total": self.total,
                "calibration": self.calibration, "gpu_estimates": self.gpu_estimates,
                "notes": self.notes}


@dataclass
class _Work:
    """A usable input's plan with what the estimates need of it."""

    plan: VideoPlan
    item: StoredVideo
    info: VideoInfo
    chunks: tuple  # the Chunks the driver would cut it into here

    @property
    def pixels(self) -> int:
        return self.plan.width * self.plan.height

    @property
    def frames(self) -> int:
        """Its own frames (the encoder's work)."""
        return self.plan.frames


def chunk_frames_for(chunk: ChunkConfig, width: int, height: int,
                     worker_mpx_s: float | None) -> int:
    """The driver's chunk size for ``width x height`` frames on a worker that enhances
    ``worker_mpx_s`` megapixels per second (None: not known before the run)."""
    return chunk.frames_for(width, height, worker_mpx_s)


def driver_chunks(info: VideoInfo, chunk: ChunkConfig, worker_mpx_s: float | None = None):
    """The chunks (:class:`~nhance_batch.media.Chunk`) the driver would cut ``info``'s video
    into, on a worker of ``worker_mpx_s`` megapixels per second."""
    from nhance_batch.media import plan_chunks

    size = chunk_frames_for(chunk, info.width, info.height, worker_mpx_s)
    return plan_chunks(info.frame_count, size, chunk.overlap)


def _enhanced_frames(chunks) -> int:
    return sum(c.ctx_end - c.ctx_start for c in chunks)


def _probe(item: StoredVideo, options: dict,
           limits: LimitsConfig) -> tuple[VideoInfo | Failure, int | None]:
    """(VideoInfo or Failure, size in bytes) of a listed input, as the driver probes it."""
    from nhance_batch import storage
    from nhance_batch.pipeline import stages

    try:
        fingerprint, size = storage.video_fingerprint(item, options)
    except (OSError, storage.StorageError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return stages.Failure("probe", storage.redact(f"{item.source}: {reason}", options)), None
    source = stages.Source(item.source, storage.options_for(item.source, options),
                           fingerprint, size)
    task = stages.ProbeTask(source, limits.max_pixels, limits.max_frames,
                            decode_first_frame=False)
    return stages.probe_stage(task), size


def plan_job(input_spec: str, *, model: ModelConfig, chunk: ChunkConfig, encode: EncodeConfig,
             limits: LimitsConfig, storage_options: dict | None = None, gpus: int = 1,
             calibration: CalibrationSource = None, gpu_kind: str | None = None,
             sample_output: bool = True, enhance_sample: bool = False) -> JobPlan:
    """Plan the job over ``input_spec`` (a file, folder, glob or store URL).

    Args:
        model, chunk, encode, limits: the job's configs (the same objects a run gets).
        gpus: how many GPUs the GPU estimates assume.
        calibration: this machine's :class:`~nhance_batch.estimate.calibration.Calibration`, or
            a callable returning it (called only once some input is usable, so that a plan of
            broken or missing inputs measures nothing); None: no estimate for this machine.
        gpu_kind: only this kind from the rate table (None: every kind in it).
        sample_output: estimate output sizes by encoding frames sampled along the usable
            inputs (:func:`~nhance_batch.estimate.sizing.sample_size`); False: no sizes.
        enhance_sample: also run the job's enhancer on a crop of the first sample, to measure
            how much its output grows (else a typical growth is assumed).

    Raises:
        FileNotFoundError: ``input_spec`` names nothing.
        ValueError: ``gpus`` < 1, or ``gpu_kind`` is not in the table.
    """
    from nhance_batch import storage
    from nhance_batch.rates import load_rates

    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    table = load_rates()
    kinds = _gpu_kinds(table, gpu_kind)
    options = storage_options or {}
    inputs = storage.list_videos(input_spec, options)
    inputs = list({item.source: item for item in inputs}.values())
    from nhance_batch.rates import known_enhancer_rate

    mpx_s = known_enhancer_rate(model).mpx_s
    videos, work = [], []
    for item in inputs:
        plan, usable = _plan_video(item, options, chunk, encode, limits, mpx_s)
        videos.append(plan)
        if usable is not None:
            work.append(usable)
    notes: list[str] = []
    if callable(calibration):
        calibration = calibration() if work else None
    samples = []
    if sample_output:
        from nhance_batch.estimate.sizing import lazy_enhancer

        enhance = lazy_enhancer(model) if enhance_sample else None
        samples = _sample_output(work, options, encode, enhance, notes)
    if calibration is not None:
        _estimate_here(work, calibration)
    estimates, per_kind = _gpu_estimates(table, kinds, work, gpus, model.precision, chunk,
                                         encode, notes)
    total = _totals(videos, work, calibration, samples, gpus=gpus, precision=model.precision,
                    per_kind=per_kind)
    return JobPlan(videos, total, calibration.as_dict() if calibration is not None else None,
                   estimates, notes)


def _gpu_kinds(table: RateTable, gpu_kind: str | None) -> list[str]:
    """The GPU kinds to estimate: ``gpu_kind``, else every kind in the table.

    Raises:
        ValueError: ``gpu_kind`` is not in the table.
    """
    kinds = table.kinds()
    if gpu_kind is None:
        return kinds
    if gpu_kind not in kinds:
        raise ValueError(f"no measured rates for GPU kind {gpu_kind!r}; known: "
                         f"{', '.join(kinds)}")
    return [gpu_kind]


def _plan_video(item: StoredVideo, options: dict, chunk: ChunkConfig, encode: EncodeConfig,
                limits: LimitsConfig,
                mpx_s: float | None = None) -> tuple[VideoPlan, _Work | None]:
    """One input's plan, and its work when the run could process it (None: it would fail,
    and the plan says why)."""
    from nhance_batch.media import output_container
    from nhance_batch.pipeline import stages

    plan = VideoPlan(item.source, item.relative)
    info, size = _probe(item, options, limits)
    plan.input_bytes = size
    if isinstance(info, stages.Failure):
        plan.error = info.error
        return plan, None
    try:
        output_container(item.relative, info, encode)
    except Exception as exc:  # noqa: BLE001 - the run would fail this video the same way
        plan.error = (f"{item.source}: no output container fits "
                      f"({type(exc).__name__}: {exc})")
        return plan, None
    plan.frames, plan.width, plan.height = info.frame_count, info.width, info.height
    chunks = driver_chunks(info, chunk, mpx_s)
    plan.chunk_frames = chunk_frames_for(chunk, info.width, info.height, mpx_s)
    plan.chunks, plan.enhanced_frames = len(chunks), _enhanced_frames(chunks)
    plan.tflop = round(plan.enhanced_frames * info.width * info.height * FLOPS_PER_PIXEL
                       / 1e12, 6)
    return plan, _Work(plan, item, info, chunks)


def _sample_output(work: list[_Work], options: dict, encode: EncodeConfig, enhance,
                   notes: list[str]) -> list[SizeSample]:
    """Each usable video's ``output_bytes``, from a sample of its own frames for the first
    :data:`~nhance_batch.estimate.sizing.SAMPLED_VIDEOS`, and from the first sample for the
    others; the enhancer's growth (with ``enhance``) is measured on the first sample only and
    holds for all. Returns the samples taken (a failed one adds a note)."""
    from nhance_batch.estimate.sizing import SAMPLED_VIDEOS, output_bytes

    samples: dict[int, SizeSample] = {}
    for index, item in enumerate(work[:SAMPLED_VIDEOS]):
        first = next(iter(samples.values()), None)
        sample = _sample_one(item, options, encode, enhance if first is None else None, notes)
        if sample is not None and first is not None and first.growth_measured:
            sample = replace(sample, key_growth=first.key_growth,
                             frame_growth=first.frame_growth, growth_measured=True)
        if sample is not None:
            samples[index] = sample
    first = next(iter(samples.values()), None)
    for index, item in enumerate(work):
        sample = samples.get(index, first)
        if sample is not None:
            plan = item.plan
            plan.output_bytes = output_bytes(sample, plan.width, plan.height, plan.frames,
                                             plan.chunks)
    return list(samples.values())


def _sample_one(item: _Work, options: dict, encode: EncodeConfig, enhance,
                notes: list[str]) -> SizeSample | None:
    """The output-size sample of one input (None, with a note, when it fails)."""
    from nhance_batch import storage
    from nhance_batch.estimate.sizing import sample_size
    from nhance_batch.media import MediaError
    from nhance_batch.pipeline import stages

    source = stages.Source(item.item.source, storage.options_for(item.item.source, options))
    try:
        with source.local() as path:
            return sample_size(path, item.info, encode, source=item.item.source,
                               enhance=enhance)
    except (MediaError, OSError, ValueError, storage.StorageError) as exc:
        notes.append(f"output size of {item.item.source} not sampled "
                     f"({storage.redact(str(exc), options)})")
        return None


def _chunk_work(info: VideoInfo, chunks, enhance_mpx_s: float, decode_mpx_s: float | None,
                encode_mpx_s: float | None) -> list[ChunkWork]:
    """Per chunk, its seconds per stage at these rates (None: that stage not counted)."""
    mpx = info.width * info.height / 1e6
    out = []
    for c in chunks:
        decoded = (c.ctx_end - c.ctx_start) * mpx
        own = (c.end - c.start) * mpx
        out.append(ChunkWork(decoded / decode_mpx_s if decode_mpx_s else 0.0,
                             decoded / enhance_mpx_s,
                             own / encode_mpx_s if encode_mpx_s else 0.0))
    return out


def _estimate_here(work: list[_Work], calibration: Calibration) -> None:
    """Each usable video's seconds of work on this machine (start-up not included)."""
    for item in work:
        plan = item.plan
        rate = calibration.enhance_rate(plan.width, plan.height)
        if calibration.gpu:  # decoding and encoding overlap the GPU's work
            seconds = _chunk_work(item.info, item.chunks, rate, calibration.decode_mpx_s,
                                  calibration.encode_mpx_s)
            plan.seconds_here = round(gpu_seconds(seconds, 1), 3)
            continue
        rate *= cpu_share(calibration.machine.get("cores") or 1)
        seconds = _chunk_work(item.info, item.chunks, rate, calibration.decode_mpx_s,
                              calibration.encode_mpx_s)
        plan.seconds_here = round(cpu_seconds(seconds), 3)


def _startup_here(work: list[_Work], calibration: Calibration) -> dict:
    """The start-up a run pays here, by part (seconds)."""
    shapes = len({(w.plan.width, w.plan.height) for w in work})
    return {"command_and_ray": round(run_overhead(calibration.ray_s), 3),
            "enhancer_actor": calibration.startup_s,
            "frame_sizes": round(shapes * calibration.shape_s, 3)}


def _size_basis(samples: list[SizeSample], videos: int) -> str:
    if not samples:
        return "not estimated"
    codecs = ", ".join(sorted({s.codec for s in samples}))
    growth = ("measured with the enhancer on a crop" if samples[0].growth_measured
              else "typical")
    return (f"{codecs} on frames sampled along {len(samples)} of the {videos} videos (the "
            f"others in proportion to their pixels), times the enhanced output's growth "
            f"({growth}); copied audio and subtitles not counted")


def _totals(videos: list[VideoPlan], work: list[_Work], calibration: Calibration | None,
            samples: list[SizeSample], *, gpus: int, precision: str,
            per_kind: dict[str, float]) -> dict:
    """The job's totals (``JobPlan.total``)."""
    usable = [w.plan for w in work]
    seconds_here = startup = None
    if calibration is not None and work:
        startup = _startup_here(work, calibration)
        seconds_here = round(sum(startup.values()) + sum(p.seconds_here for p in usable), 3)
    return {
        "videos": len(videos),
        "usable": len(usable),
        "failed": len(videos) - len(usable),
        "frames": sum(p.frames for p in usable),
        "chunks": sum(p.chunks for p in usable),
        "enhanced_frames": sum(p.enhanced_frames for p in usable),
        "tflop": round(sum(p.tflop for p in usable), 6),
        "output_bytes": (sum(p.output_bytes for p in usable)
                         if all(p.output_bytes is not None for p in usable) else None),
        "output_bytes_basis": _size_basis(samples, len(work)),
        "output_samples": [s.as_dict() for s in samples],
        "seconds_here": seconds_here,
        "startup_here": startup,
        "seconds_per_gpu_kind": per_kind,
        "gpus": gpus,
        "precision": precision,
    }


def _kind_chunks(table: RateTable, kind: str, precision: str, work: list[_Work],
                 chunk: ChunkConfig, encode_mpx_s: float | None,
                 sources: dict) -> tuple[list[ChunkWork], int] | None:
    """Every chunk's work on one ``kind`` GPU (chunks cut for that GPU's rate, in the order
    the driver submits them) and how many there are; None when a rate is not measured."""
    chunks: list[ChunkWork] = []
    count = 0
    for item in work:
        found = table.enhancer_rate(kind, precision, item.plan.width, item.plan.height)
        if found is None:
            return None
        rate, rows = found
        sources.update(dict.fromkeys(row.source for row in rows))
        cut = driver_chunks(item.info, chunk, rate)
        count += len(cut)
        chunks += _chunk_work(item.info, cut, rate, None, encode_mpx_s)
    return chunks, count


def _gpu_estimate(table: RateTable, kind: str, work: list[_Work], gpus: int, precision: str,
                  chunk: ChunkConfig, encode: EncodeConfig) -> dict | None:
    """The job's seconds on ``gpus`` GPUs of ``kind`` (start-up included) and what bounds
    them; None when the table has no enhancer rate for ``precision``."""
    encoder = None
    if not encode.lossless and work:
        codec, crf = _encoder_of(encode, work[0].info)
        encoder = table.encoder_rate(kind, codec, crf, encode.preset)
    sources: dict = {}
    found = _kind_chunks(table, kind, precision, work, chunk,
                         encoder.mpx_s if encoder else None, sources)
    if found is None:
        return None
    chunks, count = found
    enhance_s = gpu_seconds([ChunkWork(c.decode, c.enhance, 0.0) for c in chunks], gpus)
    encode_s = None
    if encoder is not None:
        # one node of the measured shape per GPU, its CPUs encoding together
        encode_s = sum(w.frames * w.pixels for w in work) / 1e6 / (gpus * encoder.mpx_s)
        sources[encoder.source] = None
    shapes = len({(w.plan.width, w.plan.height) for w in work})
    startup = run_overhead() + GPU_ACTOR_START_S + max(0, shapes - 1) * GPU_SHAPE_S
    work_s = gpu_seconds(chunks, gpus, encode_s or 0.0)
    return {
        "kind": kind, "gpus": gpus, "precision": precision, "chunks": count,
        "gpus_used": min(gpus, count),
        "startup_seconds": round(startup, 3),
        "enhance_seconds": round(enhance_s, 3),
        "encode_seconds": None if encode_s is None else round(encode_s, 3),
        "seconds": round(startup + work_s, 3),
        "bound": "encoder" if encode_s is not None and encode_s > enhance_s else "enhancer",
        "sources": list(sources),
    }


def _encoder_of(encode: EncodeConfig, info: VideoInfo) -> tuple[str, int | None]:
    """(encoder, CRF) that a run would use for ``info``'s video with ``encode``."""
    from nhance_batch.media.encode import encoder_settings

    settings = encoder_settings(info, encode)
    crf = settings.options.get("crf")
    return settings.codec, int(crf) if crf is not None else encode.crf


def _gpu_estimates(table: RateTable, kinds: list[str], work: list[_Work], gpus: int,
                   precision: str, chunk: ChunkConfig, encode: EncodeConfig,
                   notes: list[str]) -> tuple[list[dict], dict[str, float]]:
    """Per GPU kind, the job's estimate on ``gpus`` GPUs; kinds without a measured rate add a
    note instead."""
    estimates, per_kind = [], {}
    for kind in kinds:
        estimate = _gpu_estimate(table, kind, work, gpus, precision, chunk, encode)
        if estimate is None:
            notes.append(f"{kind}: no measured {precision} enhancer rate; no estimate")
            continue
        if estimate["encode_seconds"] is None and not encode.lossless and work:
            codec, crf = _encoder_of(encode, work[0].info)
            notes.append(f"{kind}: no measured encode rate for {codec} CRF {crf} preset "
                         f"{encode.preset}; the estimate counts the enhancer only")
        if work and estimate["gpus_used"] < gpus:
            notes.append(f"{kind}: only {estimate['gpus_used']} of the {gpus} GPUs get work "
                         f"(chunks: {estimate['chunks']})")
        estimates.append(estimate)
        per_kind[kind] = estimate["seconds"]
    return estimates, per_kind
