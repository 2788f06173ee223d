"""``train_demo_model``: the demo's training job as a Prefect flow.

Trains one variant of the demo model (see :mod:`servegate.demo.model`) on the
diabetes dataset bundled with scikit-learn, writes ``<variant>.keras`` and
``<variant>-reference.parquet`` into ``out_dir`` (default: servegate's exports folder,
``$SERVEGATE_EXPORTS`` or ``$SERVEGATE_HOME/exports``, which ``deploy-newest-export``
watches) and emits the Prefect event
``servegate.model.exported`` carrying both paths and the model name. The
``deploy-model`` deployment in ``prefect.yaml`` is triggered by that event.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

EXPORTED_EVENT = "servegate.model.exported"
DEMO_MODEL_NAME = "diabetes"


@task(name="train and export demo model", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=600)
def train_and_export(variant: str, out_dir: str) -> dict:
    from servegate.demo.model import write_variant

    files = write_variant(variant, out_dir)
    return {"variant": variant, "model_path": str(files.model_path), "reference": str(files.reference_path)}


def exported_event_payload(name: str, files: dict) -> dict:
    return {"name": name, "model_path": files["model_path"], "reference": files["reference"]}


@flow(name="train-demo-model", flow_run_name="train-{variant}")
def train_demo_model(out_dir: str | None = None, variant: str = "baseline", name: str = DEMO_MODEL_NAME,
                     emit: bool = True) -> dict:
    logger = get_run_logger()
    if out_dir is None:
        from servegate.settings import default_exports_dir

        out_dir = str(default_exports_dir())
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    files = train_and_export(variant, out_dir)
    if emit:
        emit_event(
            event=EXPORTED_EVENT,
            resource={"prefect.resource.id": f"servegate.model.{name}", "prefect.resource.name": name},
            payload=exported_event_payload(name, files),
        )
    logger.info("trained %s: %s (reference %s)", variant, files["model_path"], files["reference"])
    return files
