"""The payload of a Ray job that runs a job spec on a cluster, built and checked without
talking to one (``nhance-batch submit`` sends it through Ray's Jobs API).

The job's entrypoint is ``python -m nhance_batch run --spec <spec>`` on the head node, so the
cluster runs exactly what ``nhance-batch run --spec`` runs locally. The runtime environment's
working directory is a small staging folder holding the spec (rebuilt from its validated
values: comments stay here) and, when shipped, this ``nhance_batch`` package with its model
registry.

Ray keeps the entrypoint, the runtime environment (``env_vars`` included) and the working
directory where anyone who can reach the cluster's dashboard reads them back (``ray job
list``, the Jobs API's job info). So nothing secret is sent: a spec whose storage options or
URLs carry credentials is refused, and so is an environment variable that is named or looks
like a credential. The cluster reaches the stores with its own credentials (instance or
node roles, workload identity, secrets mounted on the nodes). Nothing from this machine's
environment is forwarded implicitly: local paths such as ``NHANCE_MODELS`` mean nothing on
the cluster (set them on its nodes, or as a job variable to a path the nodes see).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nhance_batch.jobspec import JobSpec

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: credential modes of the stores' libraries that are words, not secrets (gcsfs ``token``)
_CREDENTIAL_MODES = frozenset({"anon", "google_default", "cloud", "cache", "browser"})
CLUSTER_CREDENTIALS_HINT = (
    "Ray shows a job's spec, runtime environment and environment variables to anyone who "
    "can reach the cluster's dashboard, so credentials must not travel with the job: give "
    "the cluster its own (an instance or node role / IAM role for S3, workload identity or "
    "the nodes' service account for GCS, a managed identity or a secret mounted on the "
    "nodes and named by AZURE_* variables set there for Azure), and keep only non-secret "
    "options (endpoint_url, region, account_name, profile, anon) in the spec")


class EnvItemError(ValueError):
    """An environment item that is not ``NAME=VALUE`` with NAME a variable name."""


class SubmitRefused(ValueError):
    """The job would carry a secret (or is otherwise unfit to send); the message names the
    offending keys, never their values."""


@dataclass
class Submission:
    """What ``submit`` hands to Ray's ``JobSubmissionClient.submit_job``: every field here
    is visible in the cluster's job info. ``working_dir`` is a local staging folder (the
    caller removes it once submitted)."""

    entrypoint: str
    working_dir: str
    env_vars: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    submission_id: str | None = None

    @property
    def runtime_env(self) -> dict[str, Any]:
        return {"working_dir": self.working_dir, "env_vars": dict(self.env_vars)}

    def submit_kwargs(self) -> dict[str, Any]:
        return {"entrypoint": self.entrypoint, "runtime_env": self.runtime_env,
                "submission_id": self.submission_id, "metadata": dict(self.metadata)}


# -- what counts as a secret -------------------------------------------------------------------

def _walk_secrets(original: Any, redacted: Any, path: str, out: list[str]) -> None:
    if isinstance(original, Mapping) and isinstance(redacted, Mapping):
        for key, value in original.items():
            _walk_secrets(value, redacted.get(key), f"{path}.{key}" if path else str(key), out)
    elif isinstance(original, (list, tuple)) and isinstance(redacted, (list, tuple)):
        for i, (a, b) in enumerate(zip(original, redacted)):
            _walk_secrets(a, b, f"{path}[{i}]", out)
    elif original != redacted:
        text = original.decode(errors="replace") if isinstance(original, bytes) else original
        if isinstance(text, str) and _is_reference(path, text):
            return
        out.append(path)


def _is_reference(path: str, value: str) -> bool:
    """A credential *mode* or a file on the cluster named by a secret-named key, not the
    secret itself: gcsfs ``token = "google_default"`` or ``token = "/var/secrets/sa.json"``,
    ``GOOGLE_APPLICATION_CREDENTIALS=/var/secrets/sa.json``, ``AWS_SHARED_CREDENTIALS_FILE``."""
    if value.strip().lower() in _CREDENTIAL_MODES:
        return True
    if not value.startswith("/") or any(c.isspace() for c in value):
        return False
    last = path.rsplit(".", 1)[-1].lower()
    return last.endswith(("_file", "_path", "_dir")) \
        or last == "google_application_credentials" \
        or (last == "token" and value.endswith(".json"))


def secret_option_keys(storage_options: Mapping[str, Any] | None) -> list[str]:
    """The dotted keys of ``storage_options`` that hold credentials (``key``, ``secret``,
    ``token``, ``connection_string``, ``sas_token``, ``account_key``... at any depth, and
    any value with an embedded account key, signature, URL password or private key)."""
    from nhance_batch.storage.redact import redacted_options

    options = dict(storage_options or {})
    found: list[str] = []
    _walk_secrets(options, redacted_options(options), "", found)
    return found


def _env_secret_reason(name: str, value: str) -> str | None:
    from nhance_batch.storage.redact import redact, redacted_options

    if redacted_options({name: value}).get(name) == "***" and not _is_reference(name, value):
        return "its name marks a credential"
    if redact(value) != value:
        return "its value holds a credential"
    return None


def parse_env(items: Iterable[str]) -> dict[str, str]:
    """``--env NAME=VALUE`` items -> dict.

    Raises:
        EnvItemError: an item is not ``NAME=VALUE``.
        SubmitRefused: a variable holds a credential (named by the variable, never echoed).
    """
    env: dict[str, str] = {}
    refused: list[str] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise EnvItemError(f"--env {name or item[:20]!r}...: expected NAME=VALUE with "
                               "NAME a variable name")
        reason = _env_secret_reason(name, value)
        if reason:
            refused.append(f"{name} ({reason})")
        env[name] = value
    if refused:
        raise SubmitRefused(
            f"--env {', '.join(refused)}: not sent, because a job's environment variables are "
            f"shown in clear in the cluster's job info. {CLUSTER_CREDENTIALS_HINT}.")
    return env


def check_spec(spec: JobSpec, spec_path: Path) -> None:
    """Refuse a spec that would carry credentials or local-only paths to the cluster."""
    relative = spec.relative_paths()
    if relative:
        raise SubmitRefused(
            f"{spec_path}: {', '.join(relative)} must be absolute paths (on storage the "
            "cluster sees) or URLs for a job that runs on a cluster")
    keys = [f"storage_options.{k}" for k in secret_option_keys(spec.storage_options)]
    from nhance_batch.storage.redact import redact

    for name in ("input", "output", "model_path", "manifest"):
        value = getattr(spec, name, None)
        if isinstance(value, str) and redact(value, spec.storage_options) != value:
            keys.append(name)
    if keys:
        raise SubmitRefused(
            f"{spec_path}: {', '.join(keys)} hold credentials; the job is not sent, because "
            f"the spec is shipped to the cluster. {CLUSTER_CREDENTIALS_HINT}.")


# -- the staged spec and package ---------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}"
                                for k, v in value.items() if v is not None) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise SubmitRefused(f"cannot write {type(value).__name__} values into a job spec")


def spec_text(spec_path: Path) -> str:
    """The spec file as TOML rebuilt from its parsed values: the same keys and values,
    without its comments (which may hold anything, such as an old credential)."""
    import tomllib

    with open(spec_path, "rb") as f:
        values = tomllib.load(f)
    lines = ["# written by nhance-batch submit from the job spec's values"]
    lines += [f"{json.dumps(key)} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _stage(spec_path: Path, ship: bool) -> str:
    """A temporary working directory for the job: the spec, and the package when shipped."""
    import nhance_batch

    staging = Path(tempfile.mkdtemp(prefix="nhance-job-"))
    try:
        (staging / spec_path.name).write_text(spec_text(spec_path), encoding="utf-8")
        if ship:
            package = Path(nhance_batch.__file__).resolve().parent
            shutil.copytree(package, staging / "nhance_batch",
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            # registry.py reads nhance_batch/_models/registry.toml (wheel) or ../models/
            registry = package / "_models" / "registry.toml"
            if not registry.is_file():
                registry = package.parent / "models" / "registry.toml"
            (staging / "models").mkdir()
            shutil.copy(registry, staging / "models" / "registry.toml")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return str(staging)


def build_submission(spec_path: Path, *, ship: bool = True, env_vars: Iterable[str] = (),
                     submission_id: str | None = None) -> Submission:
    """Validate the spec and the ``--env`` items and stage everything a job needs, without
    talking to a cluster. ``ship``: also stage this ``nhance_batch`` package (else the
    cluster's installed one runs). The caller removes the staging folder
    (``working_dir``) once the job is submitted.

    Raises:
        nhance_batch.jobspec.SpecError: the spec is invalid.
        SubmitRefused: a secret or a local-only path would be sent.
        EnvItemError: a malformed ``--env`` item.
    """
    from nhance_batch.jobspec import load_spec

    spec = load_spec(spec_path)
    spec.to_run_config()  # the same validation the job will do, before anything is sent
    check_spec(spec, spec_path)
    env = parse_env(env_vars)
    name = spec_path.name
    staging = _stage(spec_path, ship)
    return Submission(
        entrypoint=shlex.join(["python", "-m", "nhance_batch", "run", "--spec", name]),
        working_dir=staging, env_vars=env, submission_id=submission_id,
        metadata={"spec": name, "tool": "nhance-batch"})
