"""Start-up and memory of a small job: the driver never imports TensorFlow, the embedded
Ray's object store follows the job's in-flight work."""

from __future__ import annotations

import subprocess
import sys


def test_the_driver_side_imports_no_tensorflow():
    code = (
        "import sys\n"
        "import nhance_batch.cli, nhance_batch.cli.run, nhance_batch.cli.bench\n"
        "import nhance_batch.pipeline.driver, nhance_batch.pipeline.ray_executor\n"
        "import nhance_batch.model.enhancer, nhance_batch.model.autotune\n"
        "from nhance_batch.model import autotune\n"
        "autotune.cpu_model(); autotune.native_16bit(); autotune.cache_path()\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules)\n"
        "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"imported on the driver: {out}"


def test_object_store_is_sized_to_the_work_in_flight(monkeypatch):
    from nhance_batch.pipeline.ray_executor import chunks_in_flight
    from nhance_batch.pipeline.ray_session import local_object_store_bytes

    def store(actors: int) -> int:
        return local_object_store_bytes(chunks_in_flight(actors))

    monkeypatch.setenv("NHANCE_CHUNK_MEMORY", str(1 << 30))
    one = store(1)
    two = store(2)
    # (2 per actor + 1) chunks, decoded + enhanced, 3 bytes a pixel, 20 bytes a pixel budget
    assert one == int((3 * 2 * 3 * ((1 << 30) // 20)) * 5 // 4)
    assert two > one
    monkeypatch.setenv("NHANCE_CHUNK_MEMORY", str(1 << 20))
    assert store(1) == 256 << 20  # the floor
    monkeypatch.setenv("NHANCE_CHUNK_MEMORY", str(1 << 40))
    assert store(8) <= 4 << 30  # the cap



def test_shutdown_ends_the_autoscaler_monitor_first():
    """The embedded Ray's autoscaler monitor ignores SIGTERM for the second ``ray.shutdown``
    waits on it; the executor's shutdown has ended it before Ray's own shutdown starts, and
    leaves no process of the node behind."""
    code = (
        "import time, ray, psutil\n"
        "from nhance_batch.config import ClusterConfig, ModelConfig\n"
        "from nhance_batch.pipeline.ray_executor import RayExecutor\n"
        "ray.init(address='local', include_dashboard=False, _node_ip_address='127.0.0.1',\n"
        "         num_cpus=1, object_store_memory=256 << 20)\n"
        "node = ray._private.worker._global_node\n"
        "pids = [i.process.pid for v in node.all_processes.values() for i in v]\n"
        "monitor = node.all_processes['monitor'][0].process\n"
        "seen = []\n"
        "real = ray.shutdown\n"
        "ray.shutdown = lambda: (seen.append(monitor.poll() is not None), real())\n"
        "executor = RayExecutor(ModelConfig(), ClusterConfig())\n"
        "executor._started_ray = True  # as start() marks the instance it started\n"
        "executor.shutdown()\n"
        "time.sleep(0.5)\n"
        "print(seen, sum(psutil.pid_exists(p) and psutil.Process(p).status() != 'zombie'\n"
        "                for p in pids))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "[True] 0", out
