"""Running a job from the library: the one entry point that the CLI and the web app share.

:func:`run_job` builds the executor the config asks for, starts it, runs the driver and shuts
the executor down, whatever happens. Errors that mean "this job cannot run as configured"
derive from :class:`ConfigurationError` or are one of :data:`CONFIGURATION_ERRORS`; callers
map them to exit code 2 (the CLI) or a failed job with its message (the web app).
"""

from __future__ import annotations

import threading

from nhance_batch.config import RunConfig
from nhance_batch.pipeline.progress import Reporter
from nhance_batch.pipeline.summary import JobSummary
from nhance_batch.state.layout import JobLayout

class ConfigurationError(RuntimeError):
    """The job cannot run as configured (the message says why and what to do)."""


def configuration_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of :func:`run_job` that mean the job cannot run as configured."""
    from nhance_batch.model.registry import ModelError
    from nhance_batch.pipeline.executor import WorkerStartError
    from nhance_batch.pipeline.outputs import UnsafeOutput
    from nhance_batch.state.jobstate import JobConfigMismatch
    from nhance_batch.state.lease import LeaseError, LeaseLost
    from nhance_batch.storage import StorageError

    return (ConfigurationError, ModelError, JobConfigMismatch, LeaseError, LeaseLost,
            UnsafeOutput, FileNotFoundError, WorkerStartError, StorageError)


def make_executor(config: RunConfig, name: str = "ray"):
    """The executor ``name`` (``ray`` or ``sequential``) for ``config``, not yet started."""
    if name == "sequential":
        from nhance_batch.pipeline.executor import SequentialExecutor

        return SequentialExecutor(config.model)
    if name != "ray":
        raise ConfigurationError(f"unknown executor {name!r} (ray or sequential)")
    from nhance_batch.pipeline.ray_executor import RayExecutor

    return RayExecutor(config.model, config.cluster, task_seconds=config.limits.task_seconds)


def run_job(config: RunConfig, *, executor: str = "ray", manifest: str | None = None,
            force: bool = False, keep_parts: bool = False, reporter: Reporter | None = None,
            cancel: threading.Event | None = None) -> JobSummary:
    """Run (or resume) the job ``config`` to its end and return the run's summary.

    Args:
        config: the job.
        executor: ``ray`` (the embedded local Ray, or ``config.cluster.address``) or
            ``sequential`` (everything in this process).
        manifest: the manifest's URL (default ``OUTPUT/_nhance/manifest.parquet``).
        force: take over from a live driver; redo a job whose settings changed.
        keep_parts: keep encoded parts after their video is committed.
        reporter: live progress (default: none shown).
        cancel: set it to stop the run between steps; committed work is kept and the run
            is recorded as ``cancelled`` (the summary's ``status``).

    What needs no cluster is checked first, in about a second, before an executor starts:
    the model resolves, the encoder exists, INPUT names videos and OUTPUT is not among
    them. A job whose every input is done and unchanged is answered from its state: no
    executor starts, and the summary has ``already_done`` set.

    Raises:
        One of :func:`configuration_errors` when the job cannot run as configured (the
        model is missing or broken, OUTPUT holds another job or another live driver,
        OUTPUT would overwrite sources, INPUT names nothing, no enhancer could start).
    """
    from nhance_batch.model.registry import resolve
    from nhance_batch.pipeline.driver import Driver, list_inputs

    resolve(config.model.name, config.model.path)
    _check_encoder(config)
    layout = JobLayout.create(config.input, config.output, config.storage_options,
                              manifest=manifest)
    driver = Driver(config, layout, list_inputs(layout), reporter=reporter, force=force,
                    keep_parts=keep_parts, cancel=cancel)
    runner = make_executor(config, executor)
    try:
        return driver.run(runner)
    finally:
        runner.shutdown()


def _check_encoder(config: RunConfig) -> None:
    """Refuse an encoder this install's FFmpeg does not have, before any work."""
    from nhance_batch.media.encode import AUTO_CODEC, MATCH_CODEC

    codec = config.encode.codec
    if config.encode.lossless or codec in (MATCH_CODEC, AUTO_CODEC):
        return
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception as exc:  # noqa: BLE001 - PyAV's error type differs between versions
        raise ConfigurationError(
            f"--codec {codec}: this install's FFmpeg has no such encoder ({exc}); use "
            "match, auto, libx264, libx265, or another encoder `ffmpeg -encoders` lists"
        ) from None
