"""What a process of ours prints besides its own output: noise hidden, real warnings once.

Quiet is the default; ``nhance-batch -v`` (``--verbose``, or ``NHANCE_VERBOSE=1``) shows
everything again. The driver calls :func:`configure` once, at the command line's edge; an
enhancer actor calls it in its setup, with :func:`worker_env` in its ``runtime_env`` so that
the choice, and the backend's log level, reach it before TensorFlow loads.

Noise, decided here and nowhere else (none of it is something a user can act on):

* lines the backend's native code writes to the process's stderr while it loads: absl's
  pre-initialisation notice, TensorFlow, XLA, CUDA and oneDNN ``I``/``W`` lines (the oneDNN
  and CPU-feature banners, "Could not find cuda drivers"), and the ``E`` lines of a machine
  without a GPU (``failed call to cuInit``) (:data:`NATIVE_NOISE`, filtered by
  :func:`native_noise_hidden` around the backend's start-up);
* TensorFlow's later native lines below ERROR (``TF_CPP_MIN_LOG_LEVEL=2``), and its Python
  loggers below ERROR (:data:`QUIET_LEVELS`);
* Ray's INFO lines on the driver (``Started a local Ray instance``: :func:`ray_init_options`;
  they show with ``--dashboard``, whose address is among them) and its notice that the embedded instance uses token authentication
  (:data:`PYTHON_NOISE`).

Everything else shows. Our own warnings (a fallback, a dropped stream, a damaged file) are
printed as ``warning: ...``, each text once per process.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: ``1`` shows every log line (what ``-v`` sets, and what the enhancer actors inherit)
VERBOSE_ENV = "NHANCE_VERBOSE"

#: native stderr lines that are noise in quiet mode
NATIVE_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "),  # absl/glog INFO and WARNING
    re.compile(r"^E\d{4} .*(failed call to cuInit|Unable to register cu\w+ factory"
               r"|computation placer already registered)"),
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow"),
)
#: Python records that are noise in quiet mode, by the logger that writes them
PYTHON_NOISE = {
    "ray._private.authentication.authentication_token_setup":
        re.compile(r"Token authentication is enabled for this Ray cluster"),
}
#: the least level shown, in quiet mode, of loggers that only chatter below it
QUIET_LEVELS = {"tensorflow": logging.ERROR, "absl": logging.ERROR}
#: TensorFlow's native log level in quiet mode: errors only
TF_QUIET_LEVEL = "2"

_state: dict[str, object] = {}


def verbose() -> bool:
    """True when every log line is to be shown (``NHANCE_VERBOSE``)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_noise(line: str) -> bool:
    """True for a native stderr line that quiet mode hides."""
    return any(pattern.search(line) for pattern in NATIVE_NOISE)


def worker_env() -> dict[str, str]:
    """Environment variables a worker process needs to follow this process's choice (for
    an actor's ``runtime_env``)."""
    env = {VERBOSE_ENV: "1" if verbose() else "0"}
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    elif not verbose():
        env["TF_CPP_MIN_LOG_LEVEL"] = TF_QUIET_LEVEL
    return env


def ray_init_options(*, dashboard: bool = False) -> dict:
    """``ray.init`` keywords: the driver's Ray logger shows INFO only when verbose, or when
    the embedded instance's dashboard was asked for (its INFO line says where it is)."""
    return {"logging_level": logging.INFO if verbose() or dashboard else logging.WARNING}


class _NoiseFilter(logging.Filter):
    def __init__(self, pattern: re.Pattern) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


class _OnceFilter(logging.Filter):
    """Lets each (logger, level, text) through once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a live progress display
    replaces it to print above its bar)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return f"{record.levelname.lower()}: {record.name}: {text}"


def configure(verbose_flag: bool | None = None) -> None:
    """Set this process's log output up (again): quiet, or everything when ``verbose_flag``
    (None: as ``NHANCE_VERBOSE`` says). The choice is written to the environment, so that
    processes started from here follow it."""
    if verbose_flag is not None:
        os.environ[VERBOSE_ENV] = "1" if verbose_flag else "0"
    loud = verbose()
    if not loud:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_QUIET_LEVEL)
    for name, level in QUIET_LEVELS.items():
        logging.getLogger(name).setLevel(logging.NOTSET if loud else level)
    for name, pattern in PYTHON_NOISE.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _NoiseFilter)]:
            logger.removeFilter(old)
        if not loud:
            logger.addFilter(_NoiseFilter(pattern))
    root = logging.getLogger()
    old = _state.get("handler")
    if old is not None:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    handler.setLevel(logging.INFO if loud else logging.WARNING)
    if not loud:
        handler.addFilter(_OnceFilter())
    root.addHandler(handler)
    if loud and root.level > logging.INFO:
        root.setLevel(logging.INFO)
    _state["handler"] = handler


@contextmanager
def native_noise_hidden(fd: int = 2) -> Iterator[None]:
    """Within the block, lines written to ``fd`` (stderr) at the OS level are passed on
    unless :func:`is_noise` (nothing is filtered when verbose). For the backend's start-up:
    its native code writes before any log level applies."""
    if verbose():
        yield
        return
    try:
        saved = os.dup(fd)
        read_end, write_end = os.pipe()
    except OSError:
        yield
        return
    _flush_python_streams()
    os.dup2(write_end, fd)
    os.close(write_end)
    pump = threading.Thread(target=_pass_on, args=(read_end, saved), daemon=True,
                            name="nhance-native-stderr")
    pump.start()
    try:
        yield
    finally:
        _flush_python_streams()
        os.dup2(saved, fd)  # the pipe's last write end closes: the pump reads its end
        pump.join(timeout=5)
        if not pump.is_alive():  # a child still holding the pipe keeps it open: leak the fd
            os.close(saved)


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _pass_on(read_end: int, out: int) -> None:
    """Copy lines from ``read_end`` to ``out``, less the noise, until end of file."""
    pending = b""
    try:
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = [line + b"\n" for line in lines
                    if not is_noise(line.decode("utf-8", "replace"))]
            _write_all(out, b"".join(kept))
        if pending and not is_noise(pending.decode("utf-8", "replace")):
            _write_all(out, pending)
    except OSError:
        pass
    finally:
        os.close(read_end)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
