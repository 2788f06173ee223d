"""Prefect flows: ``deploy_model``, ``rollback_model``, the demo training flow and the export watcher.

Import the flows from their modules (``servegate.flows.deploy`` ...). Importing
this package gives Prefect's ephemeral server time for a first start (its
database is created then; Prefect's default limit is too short for that on a
small machine), unless the user configured a limit: see
:func:`servegate.flows.local_api.allow_slow_first_start`.
"""

from servegate.flows.local_api import allow_slow_first_start

allow_slow_first_start()
