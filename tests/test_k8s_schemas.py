"""deploy/kubernetes against Kubernetes' own OpenAPI schemas, offline (``kubernetes-validate``).

Strict mode: a field the schema does not know is an error, as ``kubectl apply`` with server-side
field validation makes it. The native sidecar (an init container with ``restartPolicy: Always``)
needs Kubernetes 1.29, the version docs/scaling.md names, so that is the version checked. The
work pool's job template is validated as the Job the Prefect Kubernetes worker submits: every
value that is exactly ``{{ variable }}`` replaced by the variable's default, as Prefect renders it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import ValidationError, validate

K8S = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.29"  # native sidecars: docs/scaling.md and serving.yaml's header
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _serving_documents() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / "serving.yaml").read_text()) if doc]


def _rendered_job() -> dict:
    """The job manifest with each whole-value placeholder replaced by its variable's default."""
    template = json.loads((K8S / "work-pool-job-template.json").read_text())
    defaults = {name: spec.get("default") for name, spec in template["variables"]["properties"].items()}

    def render(value):
        if isinstance(value, dict):  # a variable without a default (e.g. labels) leaves its field out
            rendered = {k: render(v) for k, v in value.items()}
            return {k: v for k, v in rendered.items() if v is not None}
        if isinstance(value, list):
            return [render(v) for v in value]
        whole = PLACEHOLDER.fullmatch(value) if isinstance(value, str) else None
        return defaults[whole.group(1)] if whole else value

    return render(template["job_configuration"]["job_manifest"])


@pytest.mark.parametrize("index", range(len(_serving_documents())))
def test_each_serving_document_is_valid_kubernetes(index):
    doc = _serving_documents()[index]
    validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_work_pool_job_is_a_valid_kubernetes_job():
    job = _rendered_job()
    assert job["kind"] == "Job"
    validate(job, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("where", ["deployment pod spec", "job pod spec"])
def test_a_misplaced_field_fails_the_schema_check(where):
    """The check can fail: a Job's own field put in a pod spec (what a copied template easily does)."""
    if where == "deployment pod spec":
        doc = copy.deepcopy(next(d for d in _serving_documents() if d["kind"] == "Deployment"))
    else:
        doc = _rendered_job()
    doc["spec"]["template"]["spec"]["parallelism"] = 1
    with pytest.raises(ValidationError, match="parallelism"):
        validate(doc, KUBERNETES_VERSION, strict=True)
