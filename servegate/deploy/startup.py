"""What makes a deploy fast, kept out of the steps: work started beside them, keyed by step name.

- before "export model" (process serving): the spare bundled server starts
  importing TensorFlow (:mod:`servegate.serving.runners.spare`); the canary's boot takes it;
- before "open MLflow run": validation's libraries start importing in a
  background thread (:mod:`servegate.runtime.preload`) while MLflow, staging
  and registering keep the main thread waiting;
- before "validate on canary": those imports are joined (two threads must
  never import the same modules at once);
- after a passed verdict, the validation report's plots and files are drawn
  beside the snapshot and the promotion (:mod:`servegate.deploy.side_work`);
  before "verify production" they are joined, and their failure fails that step;
- when the attempt ends (:func:`after_attempt`): the imports and any side work
  are joined and an unused spare is ended.

The step runner (:func:`servegate.deploy.steps.call_step`) calls
:func:`before_step`; the steps themselves know nothing of this.
"""

from __future__ import annotations

from servegate.deploy.record import AttemptRecord, DeployRequest


def prewarm_spare(request: DeployRequest) -> None:
    """Start the spare canary server (a no-op when one is already starting, or for Docker serving)."""
    if request.serving == "process":
        from servegate.serving.runners import spare

        spare.prewarm(request.name)


def _start_preload(record: AttemptRecord) -> None:
    from servegate.deploy import resources
    from servegate.runtime.preload import MLFLOW_STORE_SHARED_MODULES, preloader

    mlflow_here = not resources.tracks_in_helper(record.request.tracking_uri)
    preloader().start(MLFLOW_STORE_SHARED_MODULES if mlflow_here else ())


def _join_preload(record: AttemptRecord) -> None:
    from servegate.runtime.preload import preloader

    preloader().join()


def _join_report(record: AttemptRecord) -> None:
    from servegate.deploy import side_work

    side_work.join(record.report_dir)


_BEFORE = {
    "export model": lambda record: prewarm_spare(record.request),
    "open MLflow run": _start_preload,
    "validate on canary": _join_preload,
    "verify production": _join_report,
}


def before_step(name: str, record: AttemptRecord) -> None:
    hook = _BEFORE.get(name)
    if hook is not None:
        hook(record)


def after_attempt(record: AttemptRecord) -> None:
    """Never leave an import or side work running into interpreter exit; end a spare nobody took."""
    from servegate.deploy import side_work
    from servegate.runtime.preload import preloader

    preloader().join()
    side_work.join_all()
    if record.request.serving == "process":
        from servegate.serving.runners import spare

        spare.discard()
