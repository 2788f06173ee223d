"""Prefect tasks: one thin wrapper per step of :class:`servegate.pipeline.Deployment`.

The names read as the steps of the pipeline diagram, so that a flow run's
task list in the Prefect UI *is* the story of the deploy. All the work lives
in ``servegate.pipeline``; a task adds only what Prefect is for:

- ``cache_policy=NO_CACHE``: a deploy step must run every time it is asked;
  Prefect's default input-hash cache would skip a second deploy of the same file;
- retries where a retry can help: booting the canary (a port taken between
  picking and binding it, a slow first start) — but never when the model
  itself failed to load, which a retry cannot fix;
- timeouts on the steps that wait on something outside the process;
- ``on_rollback`` hooks on ``stage version`` and ``promote version``: run
  inside a Prefect ``transaction``, a failure later in the block undoes them
  (in reverse order: production is rolled back before the staged version is
  rejected). Prefect runs the hooks as soon as a task in the transaction
  fails, so every step records its exception on the Deployment first
  (``_step``), and the hooks take the reason from there.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.transactions import Transaction, get_transaction

from servegate.pipeline import Deployment

_STEP = dict(cache_policy=NO_CACHE, persist_result=False)


# Transaction values are copied on ``get``: a hook must reach the live
# Deployment (whose state the flow reads afterwards), so the transaction holds
# only its key into this table. Entries live as long as the flow run.
_LIVE: dict[str, Deployment] = {}


def register_live(dep: Deployment) -> str:
    key = f"{id(dep):x}"
    _LIVE[key] = dep
    return key


def forget_live(dep: Deployment) -> None:
    _LIVE.pop(f"{id(dep):x}", None)


def _remember(dep: Deployment) -> None:
    txn = get_transaction()
    if txn is not None:
        txn.set("deployment", register_live(dep))


def _live(txn: Transaction) -> Deployment:
    return _LIVE[txn.get("deployment")]


def _step(dep: Deployment, fn):
    """Run one step; keep the exception on the Deployment so that rollback hooks,
    which Prefect runs as soon as a task in the transaction fails, can name it."""
    try:
        return fn()
    except BaseException as exc:
        dep.failure = exc
        raise


@task(name="check inputs", **_STEP)
def check_inputs(dep: Deployment) -> None:
    _step(dep, dep.preflight)


@task(name="open MLflow run", timeout_seconds=120, **_STEP)
def open_mlflow_run(dep: Deployment) -> str:
    return _step(dep, dep.open_tracking)


@task(name="export model", timeout_seconds=900, **_STEP)
def export_model(dep: Deployment) -> str:
    return str(_step(dep, dep.export).savedmodel_dir)


@task(name="check reference data", timeout_seconds=600, **_STEP)
def check_reference(dep: Deployment) -> int:
    return _step(dep, dep.load_reference).n_rows


@task(name="compute golden predictions", timeout_seconds=900, **_STEP)
def compute_golden(dep: Deployment) -> int:
    return int(len(_step(dep, dep.compute_golden)))


@task(name="stage version", timeout_seconds=600, **_STEP)
def stage_version(dep: Deployment) -> int:
    version = _step(dep, dep.stage)
    _remember(dep)
    return version


@stage_version.on_rollback
def _reject_staged(txn: Transaction) -> None:
    dep = _live(txn)
    dep.undo_stage(dep.failure_reason())


@task(name="register in MLflow", timeout_seconds=300, **_STEP)
def register_version(dep: Deployment) -> str:
    return _step(dep, dep.register).registry_version


BOOT_ATTEMPTS = 3


def _boot_with_retries(dep: Deployment):
    """Boot the canary, up to :data:`BOOT_ATTEMPTS` times, unless the model itself failed to load or
    the spec is wrong (a retry cannot fix those).

    Retried here, inside one task run, not with Prefect's task retries: Prefect
    runs the transaction's rollback hooks as soon as a task attempt fails, so a
    Prefect-level retry booted a canary for a version the hook had already moved
    to ``rejected/`` (and reported that instead of the real failure).
    """
    import time

    from servegate.serving.runners import CanarySpecError, ModelLoadError

    for attempt in range(1, BOOT_ATTEMPTS + 1):
        try:
            return dep.boot_canary()
        except (ModelLoadError, CanarySpecError):
            raise
        except Exception as exc:
            if attempt == BOOT_ATTEMPTS:
                raise
            dep.progress(f"canary: boot attempt {attempt} of {BOOT_ATTEMPTS} failed ({exc}); retrying")
            time.sleep(1)


@task(name="boot canary", timeout_seconds=900, **_STEP)
def boot_canary(dep: Deployment) -> str:
    return _step(dep, lambda: _boot_with_retries(dep)).rest_url


@task(name="validate canary", timeout_seconds=1800, **_STEP)
def validate_canary(dep: Deployment) -> str:
    return _step(dep, dep.validate).verdict


@task(name="stop canary", timeout_seconds=120, **_STEP)
def stop_canary(dep: Deployment) -> None:
    if dep.report is None:
        dep.canary_logs_on_failure()
    # The server's graceful shutdown overlaps promotion; the flow waits for it before it ends.
    dep.stop_canary(wait=False)


@task(name="promote version", timeout_seconds=600, **_STEP)
def promote_version(dep: Deployment) -> int:
    _step(dep, dep.promote)
    _remember(dep)
    return dep.version


@promote_version.on_rollback
def _roll_production_back(txn: Transaction) -> None:
    dep = _live(txn)
    dep.undo_promote(f"rolled back: {dep.failure_reason()}")


@task(name="verify production", timeout_seconds=600, **_STEP)
def verify_production(dep: Deployment) -> bool:
    return _step(dep, dep.verify_production)


@task(name="record outcome in MLflow", timeout_seconds=300, **_STEP)
def record_outcome(dep: Deployment, error: BaseException | None):
    return dep.finish(error)
