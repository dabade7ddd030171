"""The executor's connection to Ray: join a cluster, or start and stop an embedded one.

:func:`connect` joins the cluster at ``--address`` or ``RAY_ADDRESS`` (with token
authentication where a token is available), or starts a new embedded local instance sized to
the job; :func:`disconnect` ends what :func:`connect` started, fast. Nothing here knows about
stages or actors.
"""

from __future__ import annotations

import logging
import os

from nhance_batch.config import ClusterConfig

log = logging.getLogger(__name__)


def enable_token_auth_if_available() -> None:
    """Use Ray's token authentication when a token is available and nothing says otherwise.

    Ray (2.5x) turns token auth on by itself only when it discovers a local cluster
    (``address="auto"``); with an explicit address (``--address``, ``RAY_ADDRESS``, the Jobs
    API) a client without ``RAY_AUTH_MODE=token`` is refused by a cluster that uses tokens.
    This applies Ray's own rule (``RAY_AUTH_MODE`` unset and a token in ``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) to explicit addresses too; on a cluster
    without authentication the token is simply not checked. Older Ray: nothing to do.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)
    except ImportError:
        return
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except Exception as exc:  # noqa: BLE001 - a private helper: never fatal
        log.debug("token auth check failed: %s", exc)


def connect(cluster: ClusterConfig, chunks_in_flight: int) -> bool:
    """Connect to Ray unless this process already is; True when this call started Ray.

    Args:
        cluster: the address (else ``RAY_ADDRESS``, else a new embedded instance) and whether
            the embedded instance shows its dashboard.
        chunks_in_flight: the most chunks the job keeps in Ray's object store at once (sizes
            an embedded instance's store, see :func:`local_object_store_bytes`).
    """
    import ray

    from nhance_batch.logs import ray_init_options

    if ray.is_initialized():
        return False
    address = cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        enable_token_auth_if_available()
        ray.init(address=address, log_to_driver=True, **ray_init_options())
    else:
        # "local": always a new embedded instance, never a cluster found on the machine;
        # no dashboard unless asked (ClusterConfig.dashboard, `run --dashboard`); an
        # object store sized to the work a job keeps in flight, not to the machine
        ray.init(address="local", include_dashboard=bool(cluster.dashboard),
                 log_to_driver=True,
                 object_store_memory=local_object_store_bytes(chunks_in_flight),
                 _node_ip_address="127.0.0.1",
                 **ray_init_options(dashboard=bool(cluster.dashboard)))
    return True


def disconnect() -> None:
    """End the Ray instance this process started (its autoscaler monitor first)."""
    import ray

    stop_autoscaler_monitor()
    ray.shutdown()


def stop_autoscaler_monitor() -> bool:
    """End the embedded instance's autoscaler monitor at once; True when one was ended.

    ``ray.shutdown`` stops the node's processes one after the other, each with SIGTERM and up
    to a second's wait before SIGKILL. The autoscaler monitor (which has nothing to scale on a
    local instance and no state to save) does not exit on SIGTERM within that second, so every
    local run's shutdown waited a full second for it (1.36 s in all, 0.34 s without it).
    Ray's node handle is private API: anything unexpected leaves the shutdown as it was.
    """
    try:
        import ray

        node = ray._private.worker._global_node
        infos = list(node.all_processes.get("monitor", ()))
    except Exception:  # noqa: BLE001
        return False
    ended = False
    for info in infos:
        process = getattr(info, "process", None)
        try:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=2)
                ended = True
        except Exception:  # noqa: BLE001
            pass
    return ended


def local_object_store_bytes(chunks_in_flight: int) -> int:
    """An object store for the embedded Ray, sized to what a job keeps in flight:
    ``chunks_in_flight`` chunks, each with its decoded frames and its enhanced frames (3 bytes
    per pixel each, 6 for 16-bit sources counted by the chunk budget), with a quarter of
    slack; at least 256 MiB, at most a quarter of memory or 4 GiB. Ray spills to disk beyond
    it rather than failing."""
    import psutil

    from nhance_batch.config import CHUNK_BYTES_PER_PIXEL

    chunk_pixels = int(os.environ.get("NHANCE_CHUNK_MEMORY", 2 << 30)) // CHUNK_BYTES_PER_PIXEL
    in_flight = chunks_in_flight * 2 * 3 * chunk_pixels
    cap = min(psutil.virtual_memory().total // 4, 4 << 30)
    return int(max(256 << 20, min(cap, in_flight * 5 // 4)))
