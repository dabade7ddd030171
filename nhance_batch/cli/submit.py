"""``nhance-batch submit``: send a job spec to a Ray cluster through its Jobs API.

The job's entrypoint is ``python -m nhance_batch run --spec <spec>`` on the head node, so the
cluster runs exactly what ``nhance-batch run --spec`` runs locally. The runtime environment's
working directory is a small staging folder holding the spec and, unless ``--no-ship``, this
``nhance_batch`` package with its model registry: every Ray worker of the job imports the
submitter's code (the cluster needs the project's dependencies installed, e.g. from the
cluster configs in ``cluster/``). ``NHANCE_MODELS`` is passed on when it is set here.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
#: Environment variables passed on to the job when they are set where submit runs.
FORWARDED_ENV = ("NHANCE_MODELS", "NHANCE_CACHE", "TF_CPP_MIN_LOG_LEVEL")


def _stage(spec_path: Path, ship: bool) -> str:
    """A temporary working directory for the job: the spec, and the package when shipped."""
    import nhance_batch

    staging = Path(tempfile.mkdtemp(prefix="nhance-job-"))
    shutil.copy(spec_path, staging / spec_path.name)
    if ship:
        package = Path(nhance_batch.__file__).resolve().parent
        shutil.copytree(package, staging / "nhance_batch",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # registry.py reads nhance_batch/_models/registry.toml (wheel) or ../models/ (checkout)
        registry = package / "_models" / "registry.toml"
        if not registry.is_file():
            registry = package.parent / "models" / "registry.toml"
        (staging / "models").mkdir()
        shutil.copy(registry, staging / "models" / "registry.toml")
    return str(staging)


def _follow(client, job_id: str, poll_s: float = 1.0) -> str:
    """Print the job's logs as they come until it finishes; return its final status."""
    printed = 0
    while True:
        status = client.get_job_status(job_id)
        status = str(getattr(status, "value", status))
        try:
            logs = client.get_job_logs(job_id)
        except Exception:  # noqa: BLE001 - logs are best effort; the status decides
            logs = ""
        if len(logs) > printed:
            sys.stdout.write(logs[printed:])
            sys.stdout.flush()
            printed = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


@click.command("submit")
@click.argument("spec_path", metavar="SPEC",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--address", default=None, metavar="URL",
              help="The cluster's Jobs API (its dashboard), e.g. http://HEAD:8265 "
                   "[default: RAY_API_SERVER_ADDRESS, else RAY_ADDRESS].")
@click.option("--wait", is_flag=True,
              help="Follow the job's logs; exit 0 when it succeeds, 1 when it fails.")
@click.option("--ship/--no-ship", default=True,
              help="Send this nhance_batch package with the job, or use the one installed on "
                   "the cluster.")
@click.option("--env", "env_vars", multiple=True, metavar="NAME=VALUE",
              help="An environment variable for the job (repeatable).")
@click.option("--submission-id", default=None, help="The job's id [default: Ray picks one].")
def submit(spec_path: Path, address: str | None, wait: bool, ship: bool, env_vars: tuple,
           submission_id: str | None) -> None:
    """Submit the job spec SPEC (see jobs/example.toml) to a Ray cluster and print the job's
    id; with --wait, follow it to the end. Paths in the spec must be visible on the cluster
    (absolute paths on shared storage, or storage URLs).

    Exit code 0 when submitted (with --wait: when the job succeeded), 1 when the job failed or
    was stopped, 2 for usage or configuration errors."""
    from nhance_batch.jobspec import SpecError, load_spec

    try:
        spec = load_spec(spec_path)
        spec.to_run_config()  # the same validation the job will do, before anything is sent
    except SpecError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    relative = spec.relative_paths()
    if relative:
        click.echo(f"error: {spec_path}: {', '.join(relative)} must be absolute paths (on "
                   "storage the cluster sees) or URLs for a job that runs on a cluster",
                   err=True)
        raise SystemExit(CONFIG_ERROR_EXIT)
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get(
        "RAY_ADDRESS")
    if not address:
        raise click.UsageError("give the cluster's Jobs API address with --address "
                               "(http://HEAD:8265)")
    env = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
    for item in env_vars:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value

    from ray.job_submission import JobSubmissionClient

    from nhance_batch.pipeline.ray_executor import enable_token_auth_if_available

    enable_token_auth_if_available()
    staging = _stage(spec_path, ship)
    try:
        try:
            client = JobSubmissionClient(address)
            job_id = client.submit_job(
                entrypoint=f"python -m nhance_batch run --spec {spec_path.name}",
                runtime_env={"working_dir": staging, "env_vars": env},
                submission_id=submission_id,
                metadata={"spec": spec_path.name, "tool": "nhance-batch"})
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, bad token...
            click.echo(f"error: could not submit to {address}: {exc}", err=True)
            raise SystemExit(CONFIG_ERROR_EXIT) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # uploaded by submit_job
    click.echo(job_id)
    if not wait:
        return
    status = _follow(client, job_id)
    click.echo(f"job {job_id}: {status}", err=True)
    raise SystemExit(0 if status == "SUCCEEDED" else 1)
