"""Prefect tasks made from the deploy's declared steps (:mod:`servegate.attempt.steps`); see deploy_tasks."""
