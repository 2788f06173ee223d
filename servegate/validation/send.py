"""Sending the reference rows to one version of the canary, and placing every answer by row.

Every batch of the reference goes to the candidate (then the baseline) with
the configured concurrency over gRPC (REST where there is no gRPC target);
answers are placed row by row for each validated output, failed requests are
kept as outcomes (their rows are left out of the data checks and counted).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from servegate.errors import ServingError, ValidationInputError
from servegate.serving.client import PredictError, RequestOutcome, ServingClient
from servegate.validation.config import DeployConfig

#: progress(who, rows_answered, rows_total), called as answers arrive; ``who`` is
#: the version or label being sent to (candidate, then baseline).
RowProgress = Callable[[str | int, int, int], None]


def make_client(endpoint: Any, model_name: str | None, config: DeployConfig) -> ServingClient:
    """A :class:`ServingClient` from a client, a runner, or an endpoint string."""
    if isinstance(endpoint, ServingClient):
        return endpoint
    options = dict(transport=config.transport, timeout_s=config.request_timeout_s, signature_name=config.signature_name)
    if hasattr(endpoint, "rest_url") or hasattr(endpoint, "grpc_target"):
        return ServingClient.for_runner(endpoint, model_name, **options)
    if isinstance(endpoint, str):
        if not model_name:
            raise ServingError(f"endpoint {endpoint!r}: pass model_name= to validate a bare endpoint")
        if endpoint.startswith(("http://", "https://")):
            return ServingClient(model_name, rest_url=endpoint, **options)
        return ServingClient(model_name, grpc_target=endpoint.removeprefix("grpc://"), **options)
    raise ServingError(f"cannot reach a canary through a {type(endpoint).__name__}; pass a ServingClient, "
                       "a runner, or an endpoint URL")


def address(who: str | int) -> dict[str, Any]:
    """``{"version": n}`` or ``{"label": name}`` for a version number or label."""
    if isinstance(who, bool):
        raise ValidationInputError(f"candidate/baseline {who!r}: expected a version number or a label")
    if isinstance(who, (int, np.integer)):
        return {"version": int(who)}
    if isinstance(who, str):
        return {"version": int(who)} if who.isdigit() else {"label": who}
    raise ValidationInputError(f"candidate/baseline {who!r}: expected a version number or a label")


def describe(who: str | int) -> str:
    a = address(who)
    return f"version {a['version']}" if "version" in a else f"label {a['label']!r}"


class Answers:
    """Every answer of one pass over the reference, placed by row, for each validated output."""

    def __init__(self, n_rows: int, outputs: list[str]):
        self.names = outputs
        self.outputs: dict[str, np.ndarray] = {}
        self.answered = np.zeros(n_rows, dtype=bool)
        self.outcomes: list[RequestOutcome] = []
        self.n_rows = n_rows
        self.seconds = 0.0

    @property
    def errors(self) -> list[str]:
        return sorted({o.error for o in self.outcomes if o.error})

    def _value(self, outcome: RequestOutcome, name: str) -> np.ndarray | str:
        outputs = outcome.result.outputs  # type: ignore[union-attr]
        if name in outputs:
            value = outputs[name]
        elif len(outputs) == 1 and len(self.names) == 1:  # REST answers a single output without its name
            value = next(iter(outputs.values()))
        else:
            return f"answer has no output {name!r} (outputs: {sorted(outputs)})"
        value = np.asarray(value, dtype="float64").reshape(outcome.rows, -1)
        known = self.outputs.get(name)
        if known is not None and value.shape[1] != known.shape[1]:
            return f"answer width {value.shape[1]} of {name!r} differs from earlier answers ({known.shape[1]})"
        return value

    def place(self, outcome: RequestOutcome, start: int) -> None:
        self.outcomes.append(outcome)
        if not outcome.ok:
            return
        values = {}
        for name in self.names:
            value = self._value(outcome, name)
            if isinstance(value, str):
                outcome.error = value
                return
            values[name] = value
        for name, value in values.items():
            if name not in self.outputs:
                self.outputs[name] = np.full((self.n_rows, value.shape[1]), np.nan)
            self.outputs[name][start:start + outcome.rows] = value
        self.answered[start:start + outcome.rows] = True
        outcome.result = None  # placed: keep only latency and status per request (bounded memory)


def _warm_up(client: ServingClient, reference: Any, who: str | int, config: DeployConfig) -> None:
    # As TensorFlow Serving's SavedModel warmup does: the first calls of a fresh
    # server pay one-off costs (graph and kernel initialisation). Not measured; a
    # failure here shows up again, measured, in the real pass.
    if not config.warmup_requests:
        return
    first = next(iter(reference.batches(config.batch_size)))
    for _ in range(config.warmup_requests):
        try:
            client.predict(first, **address(who))
        except PredictError:
            return


def send(client: ServingClient, reference: Any, who: str | int, outputs: list[str], config: DeployConfig,
         deadline_s: float, progress: RowProgress | None = None) -> Answers:
    """Every reference row to ``who``; answers placed by row."""
    answers = Answers(reference.n_rows, outputs)
    starts: list[int] = []

    def batches():
        start = 0
        for batch in reference.batches(config.batch_size):
            starts.append(start)
            start += len(next(iter(batch.values())))
            yield batch

    _warm_up(client, reference, who, config)
    began = time.perf_counter()
    done = 0
    for outcome in client.predict_many(batches(), concurrency=config.concurrency, deadline_s=deadline_s,
                                       **address(who)):
        answers.place(outcome, starts[outcome.index])
        done += outcome.rows
        if progress is not None:
            progress(who, done, reference.n_rows)
    answers.seconds = time.perf_counter() - began
    return answers


class GoldenError(ValidationInputError):
    """Golden predictions were given in a form or size that does not fit the reference."""


def golden_arrays(golden: Any, reference: Any, outputs: list[str]) -> dict[str, np.ndarray]:
    """Golden predictions by output: a mapping by output name, or one array / column(s) for the first output."""
    from servegate.validation.reference import column_array

    primary = outputs[0]
    if golden is None:
        found = {primary: reference.golden()} if reference.has_golden else {}
    elif isinstance(golden, Mapping):
        missing = [o for o in outputs if o not in golden]
        if len(missing) == len(outputs):
            raise GoldenError(f"golden predictions: no entry for output(s) {missing} (entries: {sorted(golden)})")
        found = {o: np.asarray(golden[o]) for o in outputs if o in golden}
    elif isinstance(golden, str) or (isinstance(golden, (list, tuple)) and golden
                                     and all(isinstance(c, str) for c in golden)):
        columns = [golden] if isinstance(golden, str) else list(golden)
        found = {primary: column_array(reference, columns, False)}
    else:
        found = {primary: np.asarray(golden)}
    for name, array in found.items():
        if len(array) != reference.n_rows:
            raise GoldenError(f"golden predictions for output {name!r} have {len(array)} rows; the reference "
                              f"{reference.path} has {reference.n_rows}")
    return found
