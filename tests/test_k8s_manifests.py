"""deploy/kubernetes, checked offline.

No Kubernetes API server or its schemas are available here, so the checks are the rules these
manifests depend on, each from the Kubernetes or prefect-kubernetes docs: a native sidecar is an
init container with ``restartPolicy: Always``; every volumeMount names a volume of the pod; a Prefect
Kubernetes work pool's job manifest keeps ``containers[0].name == "prefect-job"``, parallelism 1,
completions 1 and ``restartPolicy: Never``, and every ``{{ var }}`` it uses is a declared variable.
Every document is also validated against Kubernetes' own OpenAPI schemas in strict mode (unknown
fields are errors), offline, with ``kubernetes-validate`` (tests/test_k8s_schemas.py).
The sidecar's arguments are parsed by the real ``servegate sync`` (a usage error would exit 2 naming
the option; a good command line gets as far as the S3 endpoint).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
K8S = REPO_ROOT / "deploy" / "kubernetes"


def _documents() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / "serving.yaml").read_text()) if doc]


def _pod(kind: str) -> dict:
    return next(doc for doc in _documents() if doc["kind"] == kind)["spec"]["template"]["spec"]


def test_every_document_names_its_api_and_kind():
    for doc in _documents():
        assert {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"].get("name"), doc


def test_sync_is_a_native_sidecar_sharing_an_empty_dir_with_tf_serving():
    pod = _pod("Deployment")
    sidecar = next(c for c in pod["initContainers"] if c["name"] == "servegate-sync")
    server = next(c for c in pod["containers"] if c["name"] == "tfserving")
    assert sidecar["restartPolicy"] == "Always"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["initContainers"] + pod["containers"]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, mount
    assert "emptyDir" in volumes["models"]
    base = next(a.split("=", 1)[1] for a in sidecar["args"] if a.startswith("--base-path="))
    assert f"--model_base_path={base}" in server["args"]
    deployment = next(doc for doc in _documents() if doc["kind"] == "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items()


def test_the_sidecar_arguments_are_the_real_cli(tmp_path):
    sidecar = next(c for c in _pod("Deployment")["initContainers"] if c["name"] == "servegate-sync")
    args = [a.replace("$(POD_NAME)", "pod-0").replace("/models", str(tmp_path / "models")) for a in sidecar["args"]]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path), "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_MAX_ATTEMPTS": "1"}
    result = subprocess.run([sys.executable, "-m", "servegate", "sync", *args, "--once"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "did not answer" in result.stderr.strip().splitlines()[-1], result.stderr


def test_the_work_pool_template_keeps_what_the_kubernetes_worker_requires():
    template = json.loads((K8S / "work-pool-job-template.json").read_text())
    job = template["job_configuration"]["job_manifest"]["spec"]
    spec = job["template"]["spec"]
    assert spec["containers"][0]["name"] == "prefect-job"
    assert (job["parallelism"], job["completions"], spec["restartPolicy"]) == (1, 1, "Never")
    assert template["job_configuration"]["command"] == "python -m servegate.flows.engine"
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= set(template["variables"]["properties"]), used - set(template["variables"]["properties"])
    assert template["variables"]["properties"]["env"]["default"]["SERVEGATE_STORE"].startswith("s3://")
    assert "volumes" not in spec  # no shared volume: the store is the bucket
