"""Who this process is, and whether the process named by a lease record still runs.

A record names its process by host name, pid, process start time, kernel boot id and pid
namespace (:func:`identity`). A pid can be judged only on the machine, boot and pid namespace
that gave it; there, the process is provably gone when no process has that pid, when it is a
zombie, or when the pid now belongs to a process started at another time (pid reuse). Any
doubt (another machine, another container, access denied, a record without a pid) answers
"not provably gone".
"""

from __future__ import annotations

import os
import socket
from typing import Any

_START_TIME_SLACK_S = 1.0  # process start times are derived from boot time: allow its jitter


def _boot_id() -> str | None:
    """This kernel boot's id (Linux); None elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> int | None:
    """The pid namespace's inode (Linux): pids of two containers are not comparable."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - psutil missing or the process unreadable
        return None


_IDENTITY: dict[str, Any] | None = None


def identity() -> dict[str, Any]:
    """``host``, ``pid``, ``started`` (process start time), ``boot`` (boot id) and ``pidns``
    (pid namespace) of this process; recomputed after a fork."""
    global _IDENTITY
    pid = os.getpid()
    if _IDENTITY is None or _IDENTITY["pid"] != pid:
        _IDENTITY = {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid),
                     "boot": _boot_id(), "pidns": _pid_namespace()}
    return dict(_IDENTITY)


def same_kernel(record: dict[str, Any]) -> bool:
    """True if the record's process ran on this machine, in this boot."""
    me = identity()
    if record.get("host") != me["host"]:
        return False
    return not (record.get("boot") and me["boot"] and record["boot"] != me["boot"])


def _pid_of(record: dict[str, Any]) -> int | None:
    """The record's pid if it can be judged here (this pid namespace, a positive number)."""
    me = identity()
    if record.get("pidns") is not None and me["pidns"] is not None \
            and record["pidns"] != me["pidns"]:
        return None  # another container's pid: nothing to compare here
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    return pid if pid > 0 else None


def _gone_without_psutil(pid: int) -> bool:  # pragma: no cover - psutil is a dependency
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def process_gone(record: dict[str, Any]) -> bool:
    """True if the record's process provably no longer runs. Call only for a record of this
    kernel (:func:`same_kernel`)."""
    pid = _pid_of(record)
    if pid is None:
        return False
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        return _gone_without_psutil(pid)
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        started = process.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # e.g. access denied: it exists
    recorded = record.get("started")
    return isinstance(recorded, (int, float)) \
        and abs(started - float(recorded)) > _START_TIME_SLACK_S  # the pid was reused
