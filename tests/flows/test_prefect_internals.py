"""The private Prefect API servegate relies on (servegate/flows/prefect_internals.py) still works.

A Prefect upgrade that renames or removes it fails here, not in a deploy."""

from __future__ import annotations

import os

from prefect.transactions import get_transaction, transaction

from servegate.flows.prefect_internals import listen_for_runner_control, outside_transaction


def test_outside_transaction_hides_the_open_transaction_and_restores_it():
    with transaction() as txn:
        assert get_transaction() is txn
        with outside_transaction():
            assert get_transaction() is None  # a task started here joins no transaction
        assert get_transaction() is txn


def test_the_runner_control_channel_is_still_where_prefect_keeps_it(monkeypatch):
    # Without the runner's environment, configure_from_env() does nothing; the import is what an upgrade breaks.
    for key in [k for k in os.environ if k.startswith("PREFECT__CONTROL")]:
        monkeypatch.delenv(key)
    assert listen_for_runner_control() is True
