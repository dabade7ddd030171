"""What a job would do, before it runs: per video its frames, size, chunks and work, the inputs
that would fail, and how long it would take here and on GPUs.

Inputs are listed, fingerprinted and probed by the same code as a run's driver (the listing,
:func:`~nhance_batch.pipeline.stages.probe_stage` with the job's limits, the job's chunk
planning through :meth:`~nhance_batch.config.ChunkConfig.frames_for` and
:func:`~nhance_batch.media.plan_chunks`), so the frame and chunk counts are the run's. Nothing is
decoded: the probe reads packet timestamps only.

Work is counted where it is spent: the enhancer runs every frame a chunk decodes (its own frames
and the context frames on each side), at 2 x 399,744 FLOP per pixel (:data:`TFLOP` figures);
decoding covers the same frames, encoding only the chunks' own frames.

Time on this machine comes from a calibration (:mod:`nhance_batch.estimate.calibration`): the
enhancer's start-up once, then per video the enhancer's, the decoder's and the encoder's seconds
at the measured megapixels per second. On a CPU-only machine the three share the same cores, so
their seconds add up; where the enhancer runs on a GPU, decoding and encoding overlap it and the
slower side counts. Time on N GPUs of a kind comes from the package's table of measured rates
(:mod:`nhance_batch.estimate.rates`): the enhancer's seconds over N GPUs, and where the table has the
encode rate of that node's CPUs with the job's encoder settings, the slower of the two (N nodes
of the measured shape).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Union

from nhance_batch.config import ChunkConfig, EncodeConfig, LimitsConfig, ModelConfig
from nhance_batch.model.dped import FLOPS_PER_PIXEL

if TYPE_CHECKING:
    from nhance_batch.estimate.calibration import Calibration
    from nhance_batch.estimate.rates import RateTable
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
    pixels: int  # width x height
    frames: int  # its own frames (the encoder's work)


def video_work(info: VideoInfo, chunk: ChunkConfig,
               mpx_s: float | None = None) -> tuple[int, int, int]:
    """(chunk frames, chunks, frames the enhancer runs) of a probed video under the job's
    :class:`~nhance_batch.config.ChunkConfig`, exactly as the driver plans it for a worker
    of ``mpx_s`` megapixels per second (the run's local CPU worker: the rate
    :func:`~nhance_batch.estimate.known_rate.known_enhancer_rate` knows)."""
    from nhance_batch.media import plan_chunks

    chunk_frames = chunk.frames_for(info.width, info.height, mpx_s)
    chunks = plan_chunks(info.frame_count, chunk_frames, chunk.overlap)
    return chunk_frames, len(chunks), sum(c.ctx_end - c.ctx_start for c in chunks)


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


def _here_seconds(calibration: Calibration, enhanced_px: float, own_px: float) -> float:
    enhance = enhanced_px / 1e6 / calibration.enhance_mpx_s
    media = enhanced_px / 1e6 / calibration.decode_mpx_s + own_px / 1e6 / calibration.encode_mpx_s
    return max(enhance, media) if calibration.gpu else enhance + media


def plan_job(input_spec: str, *, model: ModelConfig, chunk: ChunkConfig, encode: EncodeConfig,
             limits: LimitsConfig, storage_options: dict | None = None, gpus: int = 1,
             calibration: CalibrationSource = None, gpu_kind: str | None = None) -> JobPlan:
    """Plan the job over ``input_spec`` (a file, folder, glob or store URL).

    Args:
        model, chunk, encode, limits: the job's configs (the same objects a run gets).
        gpus: how many GPUs the GPU estimates assume.
        calibration: this machine's :class:`~nhance_batch.estimate.calibration.Calibration`, or
            a callable returning it (called only once some input is usable, so that a plan of
            broken or missing inputs measures nothing); None: no estimate for this machine.
        gpu_kind: only this kind from the rate table (None: every kind in it).

    Raises:
        FileNotFoundError: ``input_spec`` names nothing.
        ValueError: ``gpus`` < 1, or ``gpu_kind`` is not in the table.
    """
    from nhance_batch import storage
    from nhance_batch.estimate.rates import load_rates

    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    table = load_rates()
    kinds = _gpu_kinds(table, gpu_kind)
    options = storage_options or {}
    inputs = storage.list_videos(input_spec, options)
    inputs = list({item.source: item for item in inputs}.values())
    from nhance_batch.estimate.known_rate import known_enhancer_rate

    mpx_s = known_enhancer_rate(model).mpx_s
    videos, work = [], []
    for item in inputs:
        plan, usable = _plan_video(item, options, chunk, encode, limits, mpx_s)
        videos.append(plan)
        if usable is not None:
            work.append(usable)
    if callable(calibration):
        calibration = calibration() if work else None
    if calibration is not None:
        _estimate_here(work, calibration, encode)
    notes: list[str] = []
    from nhance_batch.media.encode import resolve_codec

    # the rate table is per encoder: "match" and "auto" read as the H.264 family's
    estimates, per_kind = _gpu_estimates(table, kinds, work, gpus, model.precision,
                                         resolve_codec(encode)[0], notes)
    total = _totals(videos, work, calibration, encode, gpus=gpus, precision=model.precision,
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
    plan.chunk_frames, plan.chunks, plan.enhanced_frames = video_work(info, chunk, mpx_s)
    pixels = info.width * info.height
    plan.tflop = round(plan.enhanced_frames * pixels * FLOPS_PER_PIXEL / 1e12, 6)
    if not encode.lossless:
        plan.output_bytes = size
    return plan, _Work(plan, pixels, info.frame_count)


def _estimate_here(work: list[_Work], calibration: Calibration, encode: EncodeConfig) -> None:
    """Each usable video's seconds on this machine and, for lossless output, its size."""
    for item in work:
        plan, pixels, frames = item.plan, item.pixels, item.frames
        if encode.lossless:
            plan.output_bytes = int(frames * pixels * calibration.encode_bytes_per_px)
        plan.seconds_here = round(_here_seconds(calibration, plan.enhanced_frames * pixels,
                                                frames * pixels), 3)


def _totals(videos: list[VideoPlan], work: list[_Work], calibration: Calibration | None,
            encode: EncodeConfig, *, gpus: int, precision: str,
            per_kind: dict[str, float]) -> dict:
    """The job's totals (``JobPlan.total``)."""
    usable = [w.plan for w in work]
    seconds_here = None
    if calibration is not None and work:
        seconds_here = round(calibration.startup_s + sum(p.seconds_here for p in usable), 3)
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
        "output_bytes_basis": ("FFV1 bytes per pixel measured by the calibration" if
                               encode.lossless else "the inputs' sizes (same pictures, "
                               "audio and subtitles copied)"),
        "seconds_here": seconds_here,
        "seconds_per_gpu_kind": per_kind,
        "gpus": gpus,
        "precision": precision,
    }


def _gpu_estimates(table: RateTable, kinds: list[str], work: list[_Work], gpus: int,
                   precision: str, encode: EncodeConfig,
                   notes: list[str]) -> tuple[list[dict], dict[str, float]]:
    """Per GPU kind, the job's seconds on ``gpus`` GPUs and what bounds them; kinds without a
    measured rate add a note instead."""
    estimates, per_kind = [], {}
    for kind in kinds:
        enhance_s, sources, missing = 0.0, {}, False
        for item in work:
            plan, pixels = item.plan, item.pixels
            found = table.enhancer_rate(kind, precision, plan.width, plan.height)
            if found is None:
                missing = True
                break
            rate, rows = found
            enhance_s += plan.enhanced_frames * pixels / 1e6 / (gpus * rate)
            for row in rows:
                sources[row.source] = None
        if missing:
            notes.append(f"{kind}: no measured {precision} enhancer rate; no estimate")
            continue
        encoder = None if encode.lossless else table.encoder_rate(kind, encode.codec,
                                                                  encode.crf, encode.preset)
        encode_s = None
        if encoder is not None:
            encode_s = sum(w.frames * w.pixels for w in work) / 1e6 \
                / (gpus * encoder.mpx_s)
            sources[encoder.source] = None
        seconds = max(enhance_s, encode_s or 0.0)
        bound = "encoder" if encode_s is not None and encode_s > enhance_s else "enhancer"
        estimates.append({
            "kind": kind, "gpus": gpus, "precision": precision,
            "enhance_seconds": round(enhance_s, 3),
            "encode_seconds": None if encode_s is None else round(encode_s, 3),
            "seconds": round(seconds, 3), "bound": bound,
            "sources": list(sources),
        })
        if encoder is None and not encode.lossless:
            notes.append(f"{kind}: no measured encode rate for {encode.codec} CRF {encode.crf} "
                         f"preset {encode.preset}; the estimate counts the enhancer only")
        per_kind[kind] = round(seconds, 3)
    return estimates, per_kind
