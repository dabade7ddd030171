"""What `nhance-batch submit` would send to a cluster, checked without one: no credentials
in the shipped spec, working_dir or runtime_env, no local paths forwarded, and an entrypoint
whose arguments survive a shell."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from nhance_batch.cli import cli
from nhance_batch.jobspec import load_spec
from nhance_batch.submission import (EnvItemError, SubmitRefused, build_submission, parse_env,
                                     secret_option_keys)

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _spec(folder: Path, body: str = "", name: str = "job.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text('input = "s3://videos/in/"\noutput = "s3://videos/out/"\n'
                    'chunk_frames = 8\n' + body)
    return path


def _all_staged_text(folder: str) -> str:
    chunks = []
    for root, _, files in os.walk(folder):
        for f in files:
            chunks.append(Path(root, f).read_bytes().decode(errors="replace"))
    return "\n".join(chunks)


@pytest.fixture
def built():
    made = []

    def build(*args, **kwargs):  # type: ignore[no-untyped-def]
        submission = build_submission(*args, **kwargs)
        made.append(submission.working_dir)
        return submission

    yield build
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("options, keys", [
    ('[storage_options]\nkey = "AKIAIOSFODNN7EXAMPLE"\nsecret = "' + AWS_SECRET + '"\n',
     ["storage_options.key", "storage_options.secret"]),
    ('[storage_options.s3]\nclient_kwargs = { endpoint_url = "http://minio:9000", '
     'aws_secret_access_key = "' + AWS_SECRET + '" }\n',
     ["storage_options.s3.client_kwargs.aws_secret_access_key"]),
    ('[storage_options.az]\nconnection_string = "DefaultEndpointsProtocol=https;AccountName=a;'
     'AccountKey=' + AZURE_KEY + '"\n', ["storage_options.az.connection_string"]),
    ('[storage_options.gs]\ntoken = { type = "service_account", private_key = "-----BEGIN '
     'PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n", client_email = "x@y" }\n',
     ["storage_options.gs.token.type", "storage_options.gs.token.private_key",
      "storage_options.gs.token.client_email"]),
    ('[storage_options]\nsas_token = "sv=2024&sig=abcdefgh1234"\n',
     ["storage_options.sas_token"]),
])
def test_spec_with_credentials_is_refused(tmp_path, built, options, keys):
    spec = _spec(tmp_path, options)
    with pytest.raises(SubmitRefused) as info:
        built(spec)
    message = str(info.value)
    for key in keys:
        assert key in message
    assert "instance" in message and "workload identity" in message
    for secret in (AWS_SECRET, AZURE_KEY, "AKIAIOSFODNN7EXAMPLE", "abcdefgh1234", "MIIE"):
        assert secret not in message
    # the command: exit 2, before any cluster is contacted (the address is unreachable)
    result = CliRunner().invoke(cli, ["submit", str(spec), "--address", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert keys[0] in result.output and AWS_SECRET not in result.output


def test_credential_in_a_url_is_refused(tmp_path, built):
    spec = tmp_path / "job.toml"
    spec.write_text('input = "az://videos/in/?sv=2024-01-01&sig=c2VjcmV0c2lnbmF0dXJl"\n'
                    'output = "s3://videos/out/"\n')
    with pytest.raises(SubmitRefused, match="input hold credentials") as info:
        built(spec)
    assert "c2VjcmV0c2lnbmF0dXJl" not in str(info.value)


def test_non_secret_options_are_sent(tmp_path, built):
    spec = _spec(tmp_path, '[storage_options.s3]\nanon = false\nprofile = "cluster"\n'
                           'client_kwargs = { endpoint_url = "http://minio:9000", '
                           'region_name = "eu-west-1" }\n'
                           '[storage_options.gs]\ntoken = "google_default"\n'
                           '[storage_options.az]\naccount_name = "videos"\n')
    assert secret_option_keys(load_spec(spec).storage_options) == []
    submission = built(spec)
    shipped = load_spec(Path(submission.working_dir) / "job.toml")
    assert shipped.storage_options == load_spec(spec).storage_options
    # a key file mounted on the cluster is named, not sent
    assert secret_option_keys({"gs": {"token": "/var/run/secrets/gcs/sa.json"}}) == []
    assert secret_option_keys({"gs": {"token": "ya29.a0AfH6SMBexampletoken"}}) == ["gs.token"]


def test_commented_out_secrets_stay_here(tmp_path, built):
    """The shipped spec is rebuilt from the validated values: comments never travel."""
    spec = _spec(tmp_path, f'# old credentials: secret = "{AWS_SECRET}"\nlossless = true\n'
                           '[resources]\ngpus_per_worker = 0.5\n')
    submission = built(spec, ship=True)
    shipped = Path(submission.working_dir) / "job.toml"
    assert AWS_SECRET not in _all_staged_text(submission.working_dir)
    assert tomllib.loads(shipped.read_text()) == tomllib.loads(spec.read_text())
    b = load_spec(shipped)
    assert b.lossless is True and b.gpus_per_worker == 0.5
    assert (Path(submission.working_dir) / "nhance_batch" / "cli" / "submit.py").is_file()
    assert (Path(submission.working_dir) / "models" / "registry.toml").is_file()


@pytest.mark.parametrize("item, reason", [
    (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", "name"),
    ("HF_TOKEN=hf_abcdefghijklmnop", "name"),
    ("DB_PASSWORD=hunter22", "name"),
    (f"STORE=DefaultEndpointsProtocol=https;AccountName=a;AccountKey={AZURE_KEY}", "value"),
    ("DATABASE_URL=postgres://me:s3cr3tpw@db:5432/x", "value"),
    ("GOOGLE_APPLICATION_CREDENTIALS=./sa.json", "name"),
])
def test_env_credentials_are_refused_and_not_echoed(tmp_path, item, reason):
    name, _, value = item.partition("=")
    with pytest.raises(SubmitRefused) as info:
        parse_env([item, "TF_CPP_MIN_LOG_LEVEL=3"])
    message = str(info.value)
    assert name in message and reason in message and "job info" in message
    assert value not in message
    spec = _spec(tmp_path)
    result = CliRunner().invoke(cli, ["submit", str(spec), "--address", "http://127.0.0.1:9",
                                      "--env", item])
    assert result.exit_code == 2 and name in result.output
    assert value not in result.output


def test_env_holding_a_local_secret_value_is_refused(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    with pytest.raises(SubmitRefused, match="MY_SETTING"):
        parse_env([f"MY_SETTING={AWS_SECRET}"])


def test_settings_in_env_are_sent_and_nothing_local_is_forwarded(tmp_path, built, monkeypatch):
    monkeypatch.setenv("NHANCE_MODELS", str(tmp_path / "my-models"))
    monkeypatch.setenv("NHANCE_CACHE", str(tmp_path / "my-cache"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    spec = _spec(tmp_path)
    submission = built(spec, env_vars=["TF_CPP_MIN_LOG_LEVEL=3",
                                       "NHANCE_MODELS=/shared/models/dped",
                                       "GOOGLE_APPLICATION_CREDENTIALS=/var/secrets/sa.json"])
    assert submission.env_vars == {"TF_CPP_MIN_LOG_LEVEL": "3",
                                   "NHANCE_MODELS": "/shared/models/dped",
                                   "GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/sa.json"}
    bare = built(spec)
    assert bare.env_vars == {} and bare.runtime_env["env_vars"] == {}
    payload = json.dumps(bare.submit_kwargs())
    staged = _all_staged_text(bare.working_dir)
    for local in (str(tmp_path / "my-models"), str(tmp_path / "my-cache"), AWS_SECRET):
        assert local not in payload and local not in staged
    with pytest.raises(EnvItemError):
        parse_env(["NOEQUALS"])
    # the command reports it as a usage error (exit 2), before any cluster is contacted
    result = CliRunner().invoke(cli, ["submit", str(spec), "--address", "http://127.0.0.1:9",
                                      "--env", "NOEQUALS"])
    assert result.exit_code == 2 and "Usage:" in result.output, result.output
    assert "expected NAME=VALUE" in result.output


def test_entrypoint_arguments_survive_a_shell(tmp_path, built):
    name = "my job; touch PWNED $(touch PWNED2) 'x'.toml"
    spec = _spec(tmp_path / "spec folder; rm -rf ~", name=name)
    submission = built(spec, ship=False)
    assert shlex.split(submission.entrypoint) == ["python", "-m", "nhance_batch", "run",
                                                  "--spec", name]
    assert (Path(submission.working_dir) / name).is_file()
    # run the entrypoint through a real shell, with a `python` that prints its arguments
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    proc = subprocess.run(["sh", "-c", submission.entrypoint], cwd=submission.working_dir,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["-m", "nhance_batch", "run", "--spec", name]
    assert not list(Path(submission.working_dir).glob("PWNED*"))
    # and the staged spec it names is the job
    staged = load_spec(Path(submission.working_dir) / name)
    assert staged.input == "s3://videos/in/" and staged.chunk_frames == 8


def test_relative_paths_are_still_refused(tmp_path, built):
    spec = tmp_path / "job.toml"
    spec.write_text('input = "videos"\noutput = "s3://videos/out/"\n')
    with pytest.raises(SubmitRefused, match="input must be absolute"):
        built(spec)


def test_the_payload_is_built_by_the_library_without_the_command_line():
    import ast

    import nhance_batch.submission as library

    tree = ast.parse(Path(library.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert "click" not in imported and "ray" not in imported
