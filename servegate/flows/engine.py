"""``python -m servegate.flows.engine``: Prefect's flow-run entrypoint, where a verdict is not a crash.

Work pools start a flow run with ``python -m prefect.engine``, which asks for
the run's *result*: a run that ends Failed raises there, so Prefect logs
"Execution of flow run ... exited with unexpected exception" with a
traceback, the process exits 1, and the worker reports "Process exited with
a general error". For a deploy that validation rejected, all three are false
alarms. This entrypoint runs the flow the same way (Prefect's own
``load_flow_run``/``load_flow``/``run_flow`` and signal handling) but asks
for the final *state*, and exits 0 when the run ended in a verdict (Failed, its
message starting with the verdict: :func:`servegate.flows.final_state.is_verdict`) or Cancelled (a
signal the deploy undid and recorded: :mod:`servegate.deploy.cancel`), 1 otherwise.
prefect.yaml sets it as the deployments' ``command`` job variable.
"""

from __future__ import annotations

import os
import sys
from uuid import UUID

def exit_code(state) -> int:
    if state is None:
        return 1
    if state.is_completed() or state.is_cancelled():
        return 0  # a cancelled deploy (SIGTERM from the worker) was undone and recorded: not a crash
    from servegate.flows.final_state import is_verdict

    return 0 if is_verdict(state) else 1


def quiet_native_logs() -> None:
    """TensorFlow's C++ log below ERROR in the flow-run process, as ``servegate deploy`` has it: on a
    machine without a GPU driver, CUDA's probe otherwise prints ``failed call to cuInit`` into the
    worker's log, an error line about nothing the deploy uses. A value the worker sets is kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> int:
    quiet_native_logs()  # before the flow's import brings TensorFlow in
    args = sys.argv[1:] if argv is None else argv
    flow_run_id = UUID(args[0] if args else os.environ["PREFECT__FLOW_RUN_ID"])
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow

    from servegate.flows.prefect_internals import listen_for_runner_control

    listen_for_runner_control()
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        flow = load_flow(flow_run)
        state = run_flow(flow, flow_run=flow_run, error_logger=flow_run_logger(flow_run=flow_run),
                         return_type="state")
    return exit_code(state)


if __name__ == "__main__":
    sys.exit(main())
