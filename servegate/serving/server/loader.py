"""One loaded model version: a SavedModel in its own TF1 Graph and Session.

This is how TensorFlow Serving loads a version (``LoadSavedModel`` with tag
``serve``): the MetaGraphDef is imported into a fresh graph, variables are
restored, and signatures run by tensor name. Fed shapes are not checked
against the signature (TensorFlow Serving does not either); a truly
incompatible shape fails inside the graph and comes back as the graph's error.

Life cycle: :func:`load_version` -> any number of concurrent :meth:`run`
calls (``Session.run`` releases the GIL, so a thread pool gives real
parallelism) -> :meth:`close` once, after the last run finished (the manager
guarantees that with reference counts).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2  # noqa: E402

from servegate.serving.server.status import StatusError, code_name  # noqa: E402

# The TF1 loader is deprecated in favour of tf.saved_model.load, which cannot load every
# SavedModel TensorFlow Serving loads (e.g. half_plus_three): keep it, without the warning.
tf.get_logger().setLevel("ERROR")

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
PREDICT_METHODS = (
    "tensorflow/serving/predict",
    "tensorflow/serving/classify",
    "tensorflow/serving/regress",
)


@dataclass
class LoadedVersion:
    """A loaded servable: ``name`` version ``version`` from ``path``."""

    name: str
    version: int
    path: Path
    graph: tf.Graph
    session: tf.compat.v1.Session
    signatures: dict[str, meta_graph_pb2.SignatureDef]
    _closed: bool = field(default=False, repr=False)
    _close_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _callables: dict = field(default_factory=dict, repr=False)

    def signature(self, name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
        """The signature called ``name`` (``""`` means ``serving_default``)."""
        key = name or DEFAULT_SIGNATURE
        try:
            return key, self.signatures[key]
        except KeyError:
            raise StatusError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.') from None

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        result = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in self.signatures.items():
            result.signature_def[key].CopyFrom(sig)
        return result

    def run(
        self,
        signature_name: str,
        inputs: dict[str, np.ndarray],
        output_filter: list[str] | None = None,
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Run a signature on named inputs; returns (signature key, {output alias: array}).

        Input aliases must be exactly the signature's; ``output_filter`` (gRPC)
        picks a subset of outputs. Errors are :class:`StatusError` with
        TensorFlow Serving's wording.
        """
        key, sig = self.signature(signature_name)
        if sig.method_name not in PREDICT_METHODS:
            raise StatusError(
                "INVALID_ARGUMENT",
                f"Expected prediction signature method_name to be one of {{{', '.join(PREDICT_METHODS)}}}. "
                f"Was: {sig.method_name}",
            )
        check_input_names(inputs.keys(), sig)
        output_names = list(output_filter) if output_filter else sorted(sig.outputs)
        for alias in output_names:
            if alias not in sig.outputs:
                raise StatusError(
                    "INVALID_ARGUMENT",
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{','.join(sorted(sig.outputs))}}}.",
                )
        feeds = {sig.inputs[alias].name: value for alias, value in inputs.items()}
        fetches = [sig.outputs[alias].name for alias in output_names]
        results = self.run_tensors(feeds, fetches)
        return key, dict(zip(output_names, results))

    def run_tensors(self, feeds: dict[str, np.ndarray], fetches: list[str]) -> list[np.ndarray]:
        """Run by tensor names; TensorFlow errors become :class:`StatusError`.

        Goes through a C++ ``Session::MakeCallable`` handle (the session's
        ``_make_callable_from_options``, which Keras' TF1 backend also used)
        rather than ``Session.run``: the Python ``run`` refuses fed shapes
        that differ from a placeholder's static shape, which TensorFlow
        Serving's C++ ``Session::Run`` accepts; and the callable parses the
        feeds/fetches once per (inputs, outputs) combination, not per call.
        """
        feed_names = tuple(sorted(feeds))
        runner = self._callable(feed_names, tuple(fetches))
        try:
            return list(runner(*(np.asarray(feeds[n]) for n in feed_names)))
        except tf.errors.OpError as exc:
            raise StatusError(code_name(exc.error_code), _first_paragraph(exc.message)) from None
        except (ValueError, TypeError) as exc:
            # Raised while converting a fed value (e.g. a ragged object array).
            raise StatusError("INVALID_ARGUMENT", str(exc)) from None

    def _callable(self, feed_names: tuple[str, ...], fetch_names: tuple[str, ...]):
        key = (feed_names, fetch_names)
        runner = self._callables.get(key)
        if runner is None:
            with self._close_lock:
                runner = self._callables.get(key)
                if runner is None:
                    try:
                        options = config_pb2.CallableOptions(feed=list(feed_names), fetch=list(fetch_names))
                        runner = self.session._make_callable_from_options(options)
                    except (tf.errors.OpError, KeyError, ValueError, TypeError) as exc:
                        raise StatusError("INVALID_ARGUMENT", f"cannot run tensors {fetch_names}: {exc}") from None
                    self._callables[key] = runner
        return runner

    def close(self) -> None:
        """Release the session; idempotent. Only call once no :meth:`run` is in flight."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self.session.close()


def check_input_names(given, sig: meta_graph_pb2.SignatureDef) -> None:
    """TensorFlow Serving's input-alias checks, with its messages (each names the input)."""
    given = set(given)
    expected = set(sig.inputs)
    for alias in sorted(given - expected):
        raise StatusError(
            "INVALID_ARGUMENT",
            f"input tensor alias not found in signature: {alias}. Inputs expected to be in the set "
            f"{{{','.join(sorted(expected))}}}.",
        )
    missing = expected - given
    if missing:
        raise StatusError(
            "INVALID_ARGUMENT",
            f"input size does not match signature: {len(given)}!={len(expected)} "
            f"len({{{','.join(sorted(given))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{}}. Missing but required: {{{','.join(sorted(missing))}}}.",
        )


def _first_paragraph(message: str) -> str:
    # TF appends Python stack traces of the graph's ops; TensorFlow Serving's message stops before them.
    for marker in ("\n\nOriginal stack trace", "\n\nErrors may have originated", "\n\nDetected at node"):
        message = message.split(marker, 1)[0]
    return message.strip()


def load_version(name: str, version: int, path: Path) -> LoadedVersion:
    """Load ``path`` (a SavedModel with a ``serve`` MetaGraph) into a fresh graph and session.

    Raises :class:`StatusError` with the loader's error (the status of the
    version in END state shows it).
    """
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    try:
        with graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(path))
    except tf.errors.OpError as exc:
        session.close()
        raise StatusError(code_name(exc.error_code), _first_paragraph(exc.message)) from None
    except OSError as exc:
        session.close()
        raise StatusError("NOT_FOUND", f"Could not load SavedModel from {path}: {exc}") from None
    except Exception as exc:  # the loader raises RuntimeError/ValueError/... for malformed SavedModels
        session.close()
        raise StatusError("INVALID_ARGUMENT", f"Could not load SavedModel from {path}: {exc}") from None
    graph.finalize()  # nothing may add ops once serving starts: keeps runs thread-safe and fast
    return LoadedVersion(
        name=name,
        version=version,
        path=Path(path),
        graph=graph,
        session=session,
        signatures=dict(meta_graph.signature_def),
    )
