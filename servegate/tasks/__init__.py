"""Thin Prefect tasks over the plain-Python steps in :mod:`servegate.pipeline`."""
