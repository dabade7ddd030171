"""``nhance-batch submit``: send a job spec to a Ray cluster through its Jobs API.

The payload (entrypoint, staged spec and package, environment) is built and checked for
secrets by :mod:`nhance_batch.submission`; this command sends it and follows the job.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT
from nhance_batch.submission import EnvItemError, SubmitRefused, build_submission

#: the statuses of a Ray job that has ended
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


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


def _send(submission, address: str | None):
    """The Jobs API client of the cluster at ``address`` and the id of the job submitted
    there (exits 2 when there is no address or the cluster refuses)."""
    if not address:
        raise click.UsageError("give the cluster's Jobs API address with --address "
                               "(http://HEAD:8265)")
    from ray.job_submission import JobSubmissionClient

    from nhance_batch.pipeline.ray_executor import enable_token_auth_if_available

    enable_token_auth_if_available()
    try:
        client = JobSubmissionClient(address)
        return client, client.submit_job(**submission.submit_kwargs())
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, bad token...
        click.echo(f"error: could not submit to {address}: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc


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
              help="An environment variable for the job (repeatable). Shown in clear in the "
                   "cluster's job info, so credentials are refused: the cluster uses its own.")
@click.option("--submission-id", default=None, help="The job's id [default: Ray picks one].")
def submit(spec_path: Path, address: str | None, wait: bool, ship: bool, env_vars: tuple,
           submission_id: str | None) -> None:
    """Submit the job spec SPEC (see jobs/example.toml) to a Ray cluster and print the job's
    id; with --wait, follow it to the end. Paths in the spec must be visible on the cluster
    (absolute paths on shared storage, or storage URLs), and the cluster must reach the
    stores with its own credentials: a spec with credentials in storage_options is refused.

    Exit code 0 when submitted (with --wait: when the job succeeded), 1 when the job failed or
    was stopped, 2 for usage or configuration errors."""
    from nhance_batch.jobspec import SpecError

    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get(
        "RAY_ADDRESS")
    try:
        submission = build_submission(spec_path, ship=ship, env_vars=env_vars,
                                      submission_id=submission_id)
    except EnvItemError as exc:
        raise click.UsageError(str(exc)) from exc
    except (SpecError, SubmitRefused) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    try:
        client, job_id = _send(submission, address)
    finally:
        shutil.rmtree(submission.working_dir, ignore_errors=True)  # uploaded by submit_job
    click.echo(job_id)
    if not wait:
        return
    status = _follow(client, job_id)
    click.echo(f"job {job_id}: {status}", err=True)
    raise SystemExit(0 if status == "SUCCEEDED" else 1)
