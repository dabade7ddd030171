"""The job's options, each declared once, in groups by concern that the commands share.

A group is a decorator that adds its options to a command, in the order declared here;
``only`` and ``without`` take part of a group. ``run`` takes every group, ``resume`` the
options a resume may change, ``plan`` those that shape its estimate: each command says which
where it is declared.

- ``MODEL``: --model --model-path --precision --jit --strength
- ``CHUNKING``: --chunk-frames --chunk-seconds --overlap --temporal-radius
- ``ENCODING``: --lossless --codec --crf --preset --hdr --previews
- ``CLUSTER``: --address --workers --max-retries --threads --dashboard --gpus-per-worker
- ``LIMITS``: --max-pixels --max-frames --task-timeout --strict
- ``STORAGE``: --storage-options
- ``JOB_CONTROL``: --executor --manifest --force --keep-parts --summary-json

``--model`` and ``--model-path`` (:data:`MODEL_CHOICE`) also serve ``bench`` and
``enhance-image``, ``--storage-options`` the commands that read a job. The values of the
options that are job settings become :func:`~nhance_batch.config.run_config` keywords through
:func:`job_values`: the keywords are read from that function's signature, not listed here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT, parse_storage

if TYPE_CHECKING:
    from nhance_batch.config import RunConfig


@dataclass(frozen=True)
class Declared:
    """One option's ``click.option`` arguments; ``name`` is its parameter's name."""

    decls: tuple[str, ...]
    attrs: Mapping[str, Any]

    @property
    def name(self) -> str:
        return click.Option(list(self.decls), **self.attrs).name

    def apply(self, fn: Callable) -> Callable:
        return click.option(*self.decls, **self.attrs)(fn)


def _option(*decls: str, **attrs: Any) -> Declared:
    return Declared(decls, attrs)


@dataclass(frozen=True)
class OptionGroup:
    """Options of one concern; as a decorator, adds them to a command in declared order."""

    options: tuple[Declared, ...]

    def __call__(self, fn: Callable) -> Callable:
        for option in reversed(self.options):
            fn = option.apply(fn)
        return fn

    def names(self) -> list[str]:
        return [option.name for option in self.options]

    def only(self, *names: str) -> OptionGroup:
        """The group with just the options of these parameter names."""
        self._check(names)
        return OptionGroup(tuple(o for o in self.options if o.name in names))

    def without(self, *names: str) -> OptionGroup:
        """The group less the options of these parameter names."""
        self._check(names)
        return OptionGroup(tuple(o for o in self.options if o.name not in names))

    def _check(self, names: tuple[str, ...]) -> None:
        unknown = set(names) - set(self.names())
        if unknown:
            raise KeyError(f"no option {', '.join(sorted(unknown))} in this group")


def compose(*groups: OptionGroup) -> Callable[[Callable], Callable]:
    """One decorator adding the groups' options in the order given."""

    def decorate(fn: Callable) -> Callable:
        for group in reversed(groups):
            fn = group(fn)
        return fn

    return decorate


MODEL = OptionGroup((
    _option("--model", "model_name", default="iphone", metavar="NAME",
            help="Model: iphone, blackberry, sony, or a fine-tuned user model (see `models`)."),
    _option("--model-path", type=click.Path(path_type=Path), default=None,
            help="Explicit checkpoint prefix (e.g. ./iphone_orig) or folder; overrides "
                 "--model."),
    _option("--precision", type=click.Choice(["float32", "bfloat16", "float16"]),
            default=None,
            help="Compute type of the convolutions; float32 reproduces the published model "
                 "exactly, 16-bit is faster where the machine has native 16-bit math "
                 "[default: float32]."),
    _option("--jit", type=click.Choice(["auto", "on", "off"]), default=None,
            help="XLA on, off (TensorFlow graph mode), or auto: the faster one measured on "
                 "this machine, cached [default: auto]."),
    _option("--strength", type=click.FloatRange(min=0.0, max=1.0), default=None,
            metavar="S",
            help="How much of the enhancement to keep, 0 to 1: the input blended with the "
                 "enhanced frame in the model's domain; 0 gives back the input's picture "
                 "[default: 1]."),
))

#: which model to run, for the commands that take no other model settings
MODEL_CHOICE = MODEL.only("model_name", "model_path")

CHUNKING = OptionGroup((
    _option("--chunk-frames", type=click.IntRange(min=0), default=0,
            help="Frames per chunk (the unit of work); 0 sizes them by time (--chunk-seconds), "
                 "within 2 GiB of enhancer memory (NHANCE_CHUNK_MEMORY)."),
    _option("--chunk-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
            help="Seconds of enhancer work per chunk on the worker that runs it, from the "
                 "rate measured on this machine (calibration, autotune) or known for its GPU; "
                 "at least 2 x overlap / 0.15 frames [default: 20]."),
    _option("--overlap", type=click.IntRange(min=0), default=None,
            help="Context frames decoded on each side of a chunk [default: the temporal "
                 "radius]."),
    _option("--temporal-radius", type=click.IntRange(min=0), default=None,
            help="Frames each side over which the colour gain is smoothed; 0 turns "
                 "stabilisation off [default: 3]."),
))

ENCODING = OptionGroup((
    _option("--lossless", is_flag=True,
            help="Encode losslessly (FFV1): decoded output frames equal the enhancer's output "
                 "exactly."),
    _option("--codec", default=None, metavar="match|auto|NAME",
            help="Video encoder: match (the source's family: H.264 -> libx264, HEVC -> libx265 "
                 "at its bit depth, AV1 -> libsvtav1, VP9 -> libvpx-vp9, others H.264 or HEVC "
                 "Main 10), auto (the hardware encoder of that family where one works), or "
                 "an FFmpeg encoder name [default: match]."),
    _option("--crf", type=click.IntRange(min=0, max=63), default=None,
            help="Constant rate factor [default: the encoder's own, about x264 CRF 18: "
                 "x264 18, x265 19, SVT-AV1 23, VP9 25]."),
    _option("--preset", default=None, help="Encoder preset [default: medium]."),
    _option("--hdr", type=click.Choice(["keep", "sdr"]), default=None,
            help="HDR (PQ or HLG) sources: keep them HDR (transfer, primaries, bit depth and "
                 "HDR10 metadata), or write the SDR BT.709 8-bit rendition the model works "
                 "in [default: keep]."),
    _option("--previews", is_flag=True,
            help="Also write a browser-playable H.264 preview of each output under "
                 "OUTPUT/_nhance/preview/."),
))

CLUSTER = OptionGroup((
    _option("--address", envvar="RAY_ADDRESS", default=None,
            help="Ray cluster to join (or RAY_ADDRESS); none starts a local Ray."),
    _option("--workers", type=click.IntRange(min=0), default=0,
            help="Enhancer actors (0: one per GPU, or one on a CPU-only machine, with all "
                 "cores)."),
    _option("--max-retries", type=click.IntRange(min=0), default=2,
            help="Retries of a failed chunk within a run."),
    _option("--threads", type=click.IntRange(min=0), default=0,
            help="Math threads per CPU enhancer actor (0: its share of the cores)."),
    _option("--dashboard", is_flag=True,
            help="Start the embedded Ray's dashboard (off: faster start, less memory)."),
    _option("--gpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=None,
            help="GPUs each enhancer actor reserves on a cluster with GPUs; a fraction (0.5) "
                 "puts several actors on one GPU [default: 1]."),
))

LIMITS = OptionGroup((
    _option("--max-pixels", default=None, metavar="WxH|N",
            help="Refuse videos whose frames have more pixels [default: 8192x8192]."),
    _option("--max-frames", type=click.IntRange(min=1), default=None,
            help="Refuse videos of more frames [default: 10000000]."),
    _option("--task-timeout", type=click.FloatRange(min=0), default=None,
            help="Seconds after which a hung decode or encode task is ended and retried "
                 "(0: no limit) [default: 900]."),
    _option("--strict", is_flag=True,
            help="A damaged recording (frames at its end that do not decode) fails, instead "
                 "of keeping the frames that decode with a note."),
))

STORAGE = OptionGroup((
    _option("--storage-options", "storage_options", envvar="NHANCE_STORAGE_OPTIONS",
            default=None, metavar="JSON",
            help="fsspec options for s3://, gs://, az:// URLs (credentials, endpoint_url...), "
                 "flat or keyed by protocol; or NHANCE_STORAGE_OPTIONS. Never printed or "
                 "recorded."),
))

JOB_CONTROL = OptionGroup((
    _option("--executor", type=click.Choice(["ray", "sequential"]), default="ray",
            help="Run on Ray, or everything in this process, one chunk at a time."),
    _option("--manifest", default=None,
            help="Manifest location [default: OUTPUT/_nhance/manifest.parquet]."),
    _option("--force", is_flag=True,
            help="Take over from another live driver, or redo a job whose settings changed."),
    _option("--keep-parts", is_flag=True,
            help="Keep the encoded chunk parts after their video is committed."),
    _option("--summary-json", type=click.Path(path_type=Path), default=None,
            help="Also write the run's summary as JSON to this file."),
))


@functools.cache
def _run_config_keywords() -> frozenset[str]:
    from nhance_batch.config import run_config

    return frozenset(name for name, p in inspect.signature(run_config).parameters.items()
                     if p.kind is inspect.Parameter.KEYWORD_ONLY)


def job_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The job settings among a command's option values, as ``run_config`` keywords:
    ``--model``'s value under ``model``, ``--storage-options`` parsed (a usage error when it
    is not JSON), and the options that are no job setting (``--executor``, ``--force``...)
    left out."""
    settings = {}
    for name, value in values.items():
        keyword = "model" if name == "model_name" else name
        if keyword == "storage_options":
            value = parse_storage(value)
        if keyword in _run_config_keywords():
            settings[keyword] = value
    return settings


def config_from_options(input_spec: str | None, output: str | None,
                        values: Mapping[str, Any], *, spec: Path | None = None) -> RunConfig:
    """The RunConfig of INPUT, OUTPUT and a command's option values, or of the job spec
    ``spec`` with the options given on the command line over its values (bad values -> a
    usage error; a bad spec -> exit 2)."""
    from nhance_batch.config import ConfigError, run_config

    if spec is not None:
        return _config_from_spec(spec, input_spec, output, values)
    if input_spec is None or output is None:
        raise click.UsageError("give INPUT and OUTPUT, or a job spec with --spec SPEC")
    try:
        return run_config(input_spec, output, **job_values(values))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _config_from_spec(spec: Path, input_spec: str | None, output: str | None,
                      values: Mapping[str, Any]) -> RunConfig:
    from click.core import ParameterSource

    from nhance_batch.jobspec import SpecError, load_spec

    ctx = click.get_current_context()
    explicit = {name: value for name, value in values.items()
                if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                      ParameterSource.ENVIRONMENT)}
    try:
        return load_spec(spec).to_run_config(input=input_spec, output=output,
                                             **job_values(explicit))
    except SpecError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
