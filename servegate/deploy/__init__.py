"""One deploy attempt, declared once as a list of steps (:mod:`servegate.deploy.steps`).

::

    from servegate.deploy import DeployRequest, run_deploy
    outcome = run_deploy(DeployRequest(model_path, name, reference, store_root=...))   # no Prefect

The Prefect flow ``deploy-model`` (:mod:`servegate.flows.deploy`) runs the
same steps as tasks. Modules: ``record`` (the plain values passed between
steps), ``steps`` (the list, the step runner, undo), ``plain`` (the runner
without Prefect), one module per domain (``inputs``, ``exporting``,
``staging``, ``canary``, ``production``, ``recording``).
"""

from servegate.deploy.verdict import ModelRejected, ProductionVerificationError
from servegate.deploy.inputs import check_request
from servegate.deploy.plain import preflight, run_deploy
from servegate.deploy.production import verify_served_version
from servegate.deploy.record import AttemptRecord, DeployOutcome, DeployRequest
from servegate.deploy.verdict import Verdict, exit_code_for

__all__ = [
    "AttemptRecord", "DeployOutcome", "DeployRequest", "ModelRejected", "ProductionVerificationError", "Verdict",
    "check_request", "exit_code_for", "preflight", "run_deploy", "verify_served_version",
]
