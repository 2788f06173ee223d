"""Every use of Prefect's private API, each behind one named function: the one place a Prefect upgrade
can break without a deprecation warning. tests/flows/test_prefect_internals.py fails when it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def outside_transaction() -> Iterator[None]:
    """Run a task as if no transaction were open: only steps with an undo join the deploy's
    transaction. Prefect marks every task of a rolled-back transaction "RolledBack"
    (Completed), which would hide the step that judged, and undo nothing for the others.
    Prefect has no public way to leave a transaction for one task: this resets the
    context variable that ``get_transaction()`` reads."""
    from prefect.transactions import BaseTransaction

    token = BaseTransaction.__var__.set(None)
    try:
        yield
    finally:
        BaseTransaction.__var__.reset(token)


def listen_for_runner_control() -> bool:
    """Connect to the runner's control channel (how a worker cancels a flow run), as
    ``python -m prefect.engine`` does; False when this Prefect has none (a private module)."""
    try:
        from prefect._internal.control_listener import configure_from_env
    except ImportError:
        return False
    configure_from_env()
    return True
