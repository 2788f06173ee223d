"""Prefect flows: ``deploy_model``, ``rollback_model`` and the demo training flow.

Import the flows from their modules (``servegate.flows.deploy`` ...): importing
this package does not import Prefect.
"""
