"""The bundled server's request log: each model's ``logging_config``, applied per request.

TensorFlow Serving's model config has a ``logging_config`` per model, but the
stock model server ships no log collector and refuses any such config at
start; the bundled server honours it. A request is sampled with the model's
``sampling_rate`` before it runs; only a sampled request builds its
``PredictionLog`` (about 5 µs: ``servegate.traffic.prediction_log``) and
queues the bytes; the recorder's writer thread (``servegate.traffic.recorder``)
only frames and writes them, so a request never waits for the disk. Settings are swapped whole when the model config file is re-read
(``--model_config_file_poll_wait_seconds``), as the proto allows: "can be
changed once a model is in serving".
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

from servegate.serving.server.metrics import METRICS, ServingMetrics
from servegate.errors import ConfigError
from servegate.serving.server.model_config import LoggingSettings, ModelConfig, load_model_config_file
from servegate.traffic import prediction_log as plog
from servegate.traffic.recorder import Recorder, RotationLimits

log = logging.getLogger("servegate.serving.server")

_REST_ORIGIN = {"instances": plog.ORIGIN_ROWS, "inputs": plog.ORIGIN_COLUMNS, "examples": plog.ORIGIN_EXAMPLES}


class RequestLogging:
    """Which models log, at what rate, to which prefix; the recorder starts with the first such model."""

    def __init__(self, models: list[ModelConfig], *, queue_size: int = 1024,
                 limits: RotationLimits = RotationLimits(), metrics: ServingMetrics = METRICS) -> None:
        self._queue_size = queue_size
        self._limits = limits
        self._metrics = metrics
        self._recorder: Recorder | None = None
        self._lock = threading.Lock()
        self._settings: dict[str, LoggingSettings] = {}
        self.update(models)

    def update(self, models: list[ModelConfig]) -> None:
        """Apply the ``logging_config`` of ``models`` (a re-read config file); models without one stop logging."""
        settings = {m.name: m.logging for m in models if m.logging is not None}
        if settings:
            self._ensure_recorder()
        for name, new in settings.items():
            if self._settings.get(name) != new:
                log.info("Request logging for model %s: %s at sampling rate %g to %s-*.tfrecord",
                         name, new.collector, new.sampling_rate, new.filename_prefix)
        for name in self._settings.keys() - settings.keys():
            log.info("Request logging for model %s: off", name)
        self._settings = settings  # one reference swap: a request sees the old or the new settings, whole

    def _ensure_recorder(self) -> None:
        with self._lock:
            if self._recorder is None:
                self._recorder = Recorder(self._queue_size, self._limits,
                                          on_drop=self._metrics.record_log_dropped,
                                          on_write=self._metrics.record_log_written)

    def sample(self, model_name: str) -> LoggingSettings | None:
        """The settings to log this request with, or None when it is not to be logged."""
        settings = self._settings.get(model_name)
        if settings is None or settings.sampling_rate <= 0.0:
            return None
        if settings.sampling_rate < 1.0 and random.random() >= settings.sampling_rate:
            return None
        return settings

    def _submit(self, settings: LoggingSettings, model_name: str, build: Callable[[], bytes]) -> None:
        """Build the record here, on the request thread (about 5 µs), and queue the finished bytes.

        Built on the writer thread, a wake-up's batch of records (about 40) would be built between the
        writer's GIL hand-offs (TensorFlow's writer releases the GIL on every record), so the request
        threads would wait on it in turn; the A/B runs in docs/traffic.md measured the server's CPU per
        logged request lower this way.
        """
        recorder = self._recorder
        if recorder is not None and recorder.has_room(model_name):
            recorder.submit(settings.filename_prefix, model_name, build())

    def log_grpc_predict(self, settings: LoggingSettings, request, response) -> None:
        """A gRPC Predict that was answered (``response`` carries the version and signature that answered)."""
        try:
            answered = int(time.time())

            def build() -> bytes:
                spec = response.model_spec
                served = plog.Served(spec.name, spec.version.value, spec.signature_name, plog.ORIGIN_GRPC,
                                     settings.sampling_rate, answered)
                return plog.grpc_predict_log(served, request, response)

            self._submit(settings, response.model_spec.name, build)
        except Exception:  # the request was answered; its log must never turn it into an error
            log.exception("request log: could not queue a gRPC Predict of model %s", response.model_spec.name)
            self._metrics.record_log_dropped(response.model_spec.name, "error")

    def log_rest(self, settings: LoggingSettings, verb: str, model_name: str, version: int,
                 addressed: plog.Addressed, capture: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
        """A REST predict/classify/regress that was answered; ``capture`` is what json_api kept of it."""
        try:
            self._log_rest(settings, verb, model_name, version, addressed, capture, answer)
        except Exception:  # the request was answered; its log must never turn it into an error
            log.exception("request log: could not queue a REST %s of model %s", verb, model_name)
            self._metrics.record_log_dropped(model_name, "error")

    def _log_rest(self, settings: LoggingSettings, verb: str, model_name: str, version: int,
                  addressed: plog.Addressed, capture: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
        answered = int(time.time())

        def build() -> bytes:
            served = plog.Served(model_name, version, capture["signature"], _REST_ORIGIN[capture["form"]],
                                 settings.sampling_rate, answered)
            if verb == "predict":
                return plog.rest_predict_log(served, addressed, capture["inputs"], capture["outputs"])
            builder = plog.rest_classify_log if verb == "classify" else plog.rest_regress_log
            return builder(served, addressed, capture["examples"], answer)

        self._submit(settings, model_name, build)

    def close(self) -> None:
        """Write what is queued and close the files (at shutdown)."""
        if self._recorder is not None:
            self._recorder.close()


def watch_config_file(path: Path, interval_s: float, request_log: RequestLogging, serving: list[ModelConfig],
                      stop: threading.Event) -> None:
    """Re-read the model config file every ``interval_s`` and apply its ``logging_config`` changes.

    As in TensorFlow Serving, a file that no longer parses is logged and the
    running config is kept. The bundled server applies only ``logging_config``
    while serving; a change to the models themselves (names, base paths,
    policies, labels) is logged as needing a restart, once per distinct change.
    """
    served = {m.name: replace(m, logging=None) for m in serving}
    warned: object = None
    while not stop.wait(interval_s):
        try:
            models = load_model_config_file(path)
        except ConfigError as exc:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s (the running config is kept)", exc)
            continue
        request_log.update(models)
        wanted = {m.name: replace(m, logging=None) for m in models}
        if wanted != served and wanted != warned:
            log.warning("model config file %s changes the models served; the bundled server applies only "
                        "logging_config while serving (restart it to serve the new models)", path)
            warned = wanted
