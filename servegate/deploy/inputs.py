"""Step "check inputs": every input that can be checked before anything changes.

:func:`check_request` needs neither TensorFlow nor the store nor Prefect, so
the CLI runs it first and a bad flag costs a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

from servegate.deploy import resources
from servegate.deploy.progress import say
from servegate.deploy.record import AttemptRecord, DeployRequest
from servegate.serving import RUNNER_KINDS
from servegate.errors import ConfigError


def check_request(request: DeployRequest):
    """Serving kind, model name, model file, reference file, validation config, Docker when
    asked for, an MLflow tracking server when the URI names one. Returns the config."""
    from servegate import export
    from servegate.model_store.layout import check_model_name
    from servegate.tracking import check_tracking_server
    from servegate.validation.config import load_config

    if request.serving not in RUNNER_KINDS:
        raise ConfigError(f"--serving {request.serving!r} is unknown: expected one of {', '.join(RUNNER_KINDS)}",
                          subject="--serving")
    if request.canary_deadline_s is not None and not request.canary_deadline_s > 0:
        raise ConfigError(f"--canary-deadline {request.canary_deadline_s!r}: expected seconds > 0 (the time the "
                          "canary server may take to load the model)", subject="--canary-deadline")
    check_model_name(request.name)  # a name that could leave the store is refused before anything exists
    export.check_load_options(Path(request.model_path), request.custom_objects, request.unsafe_deserialization)
    reference = Path(request.reference)
    if not reference.is_file():  # the same error (kind, message, subject) as the reference's own check
        from servegate.validation.reference_io import ReferenceError

        what = "not a regular file" if reference.exists() else "no such file"
        raise ReferenceError(f"reference file {reference}: {what}", subject=str(reference))
    check_store_writable(request.store_root)
    config = load_config(request.config)
    if request.serving == "docker":
        from servegate.serving.runners.docker import connect

        connect()
    check_tracking_server(request.tracking_uri)
    return config


def check_reference_early(request: DeployRequest, config) -> int | None:
    """The reference file against the model's inputs as its files state them, before the export
    (which takes seconds): the row count, or None when the inputs cannot be read without exporting
    (the step "check reference data" then checks everything after the export)."""
    from servegate.export_peek import peek_inputs

    peeked = peek_inputs(request.model_path)
    if peeked is None:
        return None
    from servegate.export import ModelSignature
    from servegate.validation.reference import check_input_rows

    return check_input_rows(request.reference, ModelSignature(inputs=peeked.inputs, outputs=()), config)


def check_store_writable(root: str) -> None:
    """A read-only store, or one whose path cannot be created, is refused here, not mid-flow."""
    from servegate.model_store import layout, space

    space.check_writable(Path(root), (*layout.AREAS, layout.META_DIR))


def check_inputs(record: AttemptRecord) -> AttemptRecord:
    """Check the request (unless the CLI already did); read what production serves now (the store
    proves its root usable)."""
    if not record.inputs_checked:
        check_request(record.request)
    status = resources.store(record).status(record.name)
    say(f"inputs checked; production serves {status.serving_version or 'nothing yet'}")
    return record.but(previous_production=status.serving_version)
