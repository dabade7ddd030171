"""The ready-made cluster configs: launcher YAMLs against Ray's own schema, KubeRay manifests'
structure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = ["aws.yaml", "gcp.yaml", "azure.yaml"]
KUBERAY = REPO / "cluster" / "kuberay"


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_config_matches_ray_schema(name, ray_schema):
    import jsonschema

    config = yaml.safe_load((REPO / "cluster" / name).read_text())
    jsonschema.validate(config, ray_schema)
    assert config["provider"]["type"] == name.removesuffix(".yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "GPU" not in head["resources"] or head["resources"]["GPU"] == 0
    workers = [t for n, t in types.items() if n != config["head_node_type"]]
    assert len(workers) == 1
    gpu = workers[0]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    if name != "aws.yaml":  # AWS detects GPUs from the instance type; the others declare them
        assert gpu["resources"]["GPU"] >= 1
    setup = " ".join(config["setup_commands"])
    assert "nhance-batch[gpu]" in setup
    assert "EDIT" in (REPO / "cluster" / name).read_text()


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def _check_cluster_spec(spec: dict) -> None:
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head["template"]["spec"]["containers"][0]["image"]
    assert spec.get("enableInTreeAutoscaling") is True
    (group,) = spec["workerGroupSpecs"]
    assert isinstance(group["rayStartParams"], dict)
    assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
    pod = group["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_kuberay_raycluster():
    (doc,) = _docs("raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    _check_cluster_spec(doc["spec"])


def test_kuberay_rayjob_runs_a_spec_and_shuts_down():
    from nhance_batch.jobspec import parse_spec

    docs = {d["kind"]: d for d in _docs("rayjob.yaml")}
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["entrypoint"].startswith("python -m nhance_batch run --spec ")
    _check_cluster_spec(spec["rayClusterSpec"])
    # the spec the entrypoint reads is mounted from the ConfigMap, and is a valid job spec
    spec_path = spec["entrypoint"].split("--spec ", 1)[1]
    mount_dir, file_name = spec_path.rsplit("/", 1)
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mount = next(m for m in head["containers"][0]["volumeMounts"]
                 if m["mountPath"] == mount_dir)
    volume = next(v for v in head["volumes"] if v["name"] == mount["name"])
    config_map = docs["ConfigMap"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    import tomllib

    parse_spec(tomllib.loads(config_map["data"][file_name])).to_run_config()


def test_example_job_spec_is_valid():
    from nhance_batch.jobspec import load_spec

    spec = load_spec(REPO / "jobs" / "example.toml")
    config = spec.to_run_config()
    assert config.cluster.gpus_per_worker == 1.0
