"""`nhance-batch submit` through a real Ray Jobs API (a local head with its dashboard)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from tests.cluster.conftest import cli_env
from tests.media.makemedia import make_video


@pytest.mark.slow
def test_submit_a_spec_and_wait(gpu_cluster, tmp_path):
    from nhance_batch.media import probe

    src = make_video(tmp_path / "in" / "clip.mp4", width=64, height=48, frames=8, gop=4)
    out = tmp_path / "out"
    spec = tmp_path / "my job; v1.toml"  # the entrypoint's argument must survive the shell
    spec.write_text(f'input = "{src.parent}"\noutput = "{out}"\nchunk_frames = 4\n'
                    'temporal_radius = 1\nlossless = true\nworkers = 1\n'
                    '[resources]\ngpus_per_worker = 1\n')
    env = cli_env()  # no RAY_AUTH_MODE: submit finds the token as Ray's own tools do
    proc = subprocess.run(
        [sys.executable, "-m", "nhance_batch", "submit", str(spec), "--address",
         gpu_cluster.dashboard_url, "--wait"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    job_id = proc.stdout.splitlines()[0].strip()
    assert job_id.startswith("raysubmit_"), proc.stdout[:500]
    assert f"job {job_id}: SUCCEEDED" in proc.stderr
    result = out / "clip.mp4"
    assert probe(result).frame_count == 8, proc.stdout[-3000:]

    # what Ray's job info shows: the quoted spec name, and nothing from this machine's
    # environment (the nodes have their own NHANCE_MODELS)
    from ray.job_submission import JobSubmissionClient

    from nhance_batch.pipeline.ray_executor import enable_token_auth_if_available

    enable_token_auth_if_available()
    client = JobSubmissionClient(gpu_cluster.dashboard_url)
    info = client.get_job_info(job_id)
    assert shlex.split(info.entrypoint)[-2:] == ["--spec", spec.name]
    assert not (info.runtime_env or {}).get("env_vars")
    assert os.environ["NHANCE_MODELS"] not in json.dumps(info.runtime_env)
    jobs_before = len(client.list_jobs())

    # a spec with credentials in its storage options is refused before anything is sent
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    leaky = tmp_path / "leaky.toml"
    leaky.write_text(f'input = "s3://videos/in/"\noutput = "s3://videos/out/"\n'
                     f'[storage_options]\nkey = "AKIAIOSFODNN7EXAMPLE"\nsecret = "{secret}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "nhance_batch", "submit", str(leaky), "--address",
         gpu_cluster.dashboard_url, "--env", f"AWS_SECRET_ACCESS_KEY={secret}"],
        capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "storage_options.secret" in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert len(client.list_jobs()) == jobs_before

    # a job that fails (a model the registry does not know) comes back as exit code 1
    bad = tmp_path / "bad.toml"
    bad.write_text(f'input = "{src.parent}"\noutput = "{tmp_path / "o2"}"\n'
                   'model = "no-such-model"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "nhance_batch", "submit", str(bad), "--address",
         gpu_cluster.dashboard_url, "--wait"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED" in proc.stderr


_WATCH_ENTRY = '''
import os, threading, time, ray
ray.init()
gone, done = [], threading.Event()
def watch():
    while not done.is_set():
        if not os.path.exists("marker.txt"):
            gone.append(time.time())
        time.sleep(0.001)
watcher = threading.Thread(target=watch)
watcher.start()
@ray.remote(num_gpus=1)
class OnAWorker:
    def where(self):
        return os.getcwd()
actors = [OnAWorker.remote() for _ in range(2)]
print("DIRS", ray.get([a.where.remote() for a in actors]))
time.sleep(1)
done.set()
watcher.join()
print("GONE", len(gone))
'''


@pytest.mark.slow
def test_a_jobs_working_dir_stays_while_its_actors_start_on_other_nodes(gpu_cluster, tmp_path):
    """The job's driver runs on the head in its unpacked working_dir; the job's actors start
    on the worker nodes. On a real cluster each node unpacks into its own disk; the local
    cluster must do the same, or a worker's agent removes and unpacks the folder again
    under the driver (a lazily imported module of the driver is then missing)."""
    import time

    from ray.job_submission import JobSubmissionClient

    from nhance_batch.pipeline.ray_executor import enable_token_auth_if_available

    enable_token_auth_if_available()  # as `nhance-batch submit` does
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "entry.py").write_text(_WATCH_ENTRY)
    (wd / "marker.txt").write_text("here\n")
    for i in range(300):  # unpacking takes a while
        (wd / f"f{i}.txt").write_text(f"{i}\n" * 50)
    client = JobSubmissionClient(gpu_cluster.dashboard_url)
    job = client.submit_job(entrypoint="python entry.py", runtime_env={"working_dir": str(wd)})
    deadline = time.monotonic() + 240
    while client.get_job_status(job) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert str(client.get_job_status(job)) in ("SUCCEEDED", "JobStatus.SUCCEEDED"), logs[-3000:]
    assert "GONE 0" in logs, logs[-3000:]
