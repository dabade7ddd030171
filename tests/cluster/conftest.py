"""Fixtures for the cluster tests: the local multi-node cluster of cluster/local_cluster.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO / "cluster"


def _load_local_cluster():
    spec = importlib.util.spec_from_file_location("nhance_local_cluster",
                                                  CLUSTER_DIR / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


local_cluster = _load_local_cluster()

#: Notice a dead node within a few seconds (defaults: about 15 s).
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
                      "health_check_failure_threshold": 3}


@pytest.fixture(scope="package")
def gpu_cluster():
    """A head (2 CPUs, dashboard and Jobs API) and two worker nodes with one logical GPU and
    one CPU each, all on this machine; stopped after the last test of this folder
    (``NHANCE_KEEP_CLUSTER_LOGS=1`` keeps its Ray logs in its temporary folder)."""
    cluster = local_cluster.LocalCluster(system_config=FAST_HEALTH_CHECKS)
    try:
        cluster.start_head(num_cpus=2, dashboard=True)
        cluster.add_worker(num_gpus=1, num_cpus=1)
        cluster.add_worker(num_gpus=1, num_cpus=1)
        yield cluster
    finally:
        cluster.stop_all(remove_temp=not os.environ.get("NHANCE_KEEP_CLUSTER_LOGS"))


def cli_env(cluster=None, **extra) -> dict[str, str]:
    """Environment for an ``nhance-batch`` subprocess: no inherited RAY_ADDRESS."""
    env = cluster.client_env() if cluster is not None else dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env
