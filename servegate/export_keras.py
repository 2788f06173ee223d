"""Loading a Keras file the ways Keras offers for models with custom code.

Keras finds a custom layer, loss or function at load time only when the class
was registered (``@keras.saving.register_keras_serializable``) by a module that
has been imported; and it refuses to run code stored in the file (a Python
``lambda`` in a ``Lambda`` layer) unless ``safe_mode=False``. Users reach both
through ``servegate deploy``'s flags:

- ``--custom-objects MODULE`` (repeatable): a dotted module name, imported
  like ``python -m`` would (the current directory and ``PYTHONPATH`` are
  searched), or a path to a ``.py`` file, imported by its location with its
  folder on ``sys.path`` (so it can import its neighbours, as a script can);
- ``--unsafe-deserialization``: ``safe_mode=False`` for this one load. Off by
  default because loading such a file runs arbitrary code from it.

Keras's own errors about these arrive as a 185-line traceback around a generic
"could not be deserialized"; :func:`load_keras` finds the cause in the exception
chain and raises one short named error that says which flag to use.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

from servegate.export_errors import (
    CUSTOM_OBJECTS_FLAG,
    UNSAFE_DESERIALIZATION_FLAG,
    CustomObjectsImportError,
    MissingCustomObjectError,
    ModelFileTruncatedError,
    NotAModelError,
    UnsafeDeserializationError,
)

_EXPECTED_MODULE = "expected a module importable from the current directory or PYTHONPATH, or a path to a .py file"


def import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


# --------------------------------------------------------------------------
# custom-object modules


def is_file_module(spec: str) -> bool:
    """A ``--custom-objects`` value is a file path when it ends in .py or has a slash."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def _import_error(spec: str, found: str) -> CustomObjectsImportError:
    return CustomObjectsImportError(f"{CUSTOM_OBJECTS_FLAG} {spec}: {found} ({_EXPECTED_MODULE})", module=spec)


def _ensure_on_path(folder: str) -> None:
    # Appended, not prepended: the user's folder never shadows an installed package.
    if folder not in sys.path:
        sys.path.append(folder)


def check_custom_modules(custom_modules: Sequence[str]) -> None:
    """Cheap checks before TensorFlow is imported: files exist, names are module names
    whose top-level package can be found. Nothing is executed here."""
    if isinstance(custom_modules, str):
        raise TypeError("custom_modules is a sequence of module names or .py paths, not one string")
    for spec in custom_modules:
        if is_file_module(spec):
            path = Path(spec)
            if not path.is_file():
                raise _import_error(spec, "no such file" if not path.exists() else "not a regular file")
            if path.suffix != ".py":
                raise _import_error(spec, f"file suffix {path.suffix or 'none'!r} is not .py")
            continue
        parts = spec.split(".")
        if not all(part.isidentifier() for part in parts):
            raise _import_error(spec, "not a module name")
        _ensure_on_path(os.getcwd())
        if importlib.util.find_spec(parts[0]) is None:  # a top-level lookup imports nothing
            raise _import_error(spec, f"no module named {parts[0]!r}")


def _file_module_name(path: Path) -> str:
    """The file's own name when that name is free (or already this file), else a unique one."""
    stem = path.stem
    if stem.isidentifier():
        current = sys.modules.get(stem)
        if current is not None:
            if Path(getattr(current, "__file__", "") or "").resolve() == path:
                return stem
        else:
            spec = importlib.util.find_spec(stem)
            if spec is None or (spec.origin and Path(spec.origin).resolve() == path):
                return stem
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    safe_stem = re.sub(r"\W", "_", stem)
    return f"_servegate_custom_objects_{safe_stem}_{digest}"


def _import_file(path: Path) -> ModuleType:
    path = path.resolve()
    name = _file_module_name(path)
    if name in sys.modules:
        return sys.modules[name]  # imported before: running it again would register twice
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it, as `import` does (dataclasses, pickling need it)
    _ensure_on_path(str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_custom_modules(custom_modules: Sequence[str]) -> list[ModuleType]:
    """Import each module (name or .py path) in order; their decorators register the custom objects."""
    check_custom_modules(custom_modules)
    modules = []
    for spec in custom_modules:
        try:
            modules.append(_import_file(Path(spec)) if is_file_module(spec) else importlib.import_module(spec))
        except (Exception, SystemExit) as exc:  # the user's code may raise anything while it runs
            raise _import_error(spec, f"importing it failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
    return modules


# --------------------------------------------------------------------------
# loading, and Keras's errors made short


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _saved_config(message: str) -> dict:
    """The object's config Keras quotes after "Full object config:" (a Python literal)."""
    _, sep, tail = message.partition("Full object config: ")
    if not sep:
        return {}
    try:
        config = ast.literal_eval(tail.strip())
    except (ValueError, SyntaxError):
        return {}
    return config if isinstance(config, dict) else {}


def _missing_object(path: Path, message: str, custom_modules: Sequence[str]) -> MissingCustomObjectError | None:
    found = re.search(r"Could not locate (class|function) '([^']+)'", message)
    legacy = re.search(r"Unknown ([a-z_ ]+): '([^']+)'", message)  # .h5 files
    parent = re.search(r"Could not deserialize (class|function) '([^']+)' because its parent module (\S+)", message)
    match = found or parent or legacy
    if match is None:
        return None
    kind, name = match.group(1), match.group(2)
    config = _saved_config(message)
    registered = config.get("registered_name") or (name if ">" in name else None)
    name = name.split(">")[-1]
    details = [f"registered as {registered!r}"] if registered and registered != name else []
    module = parent.group(3) if parent else config.get("module")
    if module == "__main__":
        details.append("defined in the training script itself: move it into a module")
    elif module:
        details.append(f"saved from module {module!r}")
    detail = f" ({'; '.join(details)})" if details else ""
    who = f"none of the imported modules ({', '.join(custom_modules)})" if custom_modules else "no imported module"
    return MissingCustomObjectError(
        f"model file {path} uses {kind} {name!r}{detail}, which {who} registers: pass {CUSTOM_OBJECTS_FLAG} MODULE, "
        "the module or .py file that defines it with @keras.saving.register_keras_serializable()",
        path=str(path),
        name=name,
        registered_name=registered,
    )


def _unsafe_refusal(path: Path, message: str) -> UnsafeDeserializationError | None:
    if "safe_mode=False" not in message:
        return None
    reason = message.split(". ")[0].removeprefix("Requested the ").rstrip(".")
    return UnsafeDeserializationError(
        f"model file {path}: Keras's safe mode refused the {reason}. Unsafe deserialization can execute "
        f"arbitrary code from the file, so it is off by default; only if you trust this file, pass "
        f"{UNSAFE_DESERIALIZATION_FLAG}",
        path=str(path),
    )


def explain_load_error(path: Path, exc: BaseException, custom_modules: Sequence[str] = ()) -> Exception | None:
    """The named error for a known cause anywhere in ``exc``'s chain, or None."""
    for cause in _chain(exc):
        message = str(cause)
        explained = _unsafe_refusal(path, message) or _missing_object(path, message, custom_modules)
        if explained is not None:
            return explained
    return None


def load_keras(
    path: Path, fmt: str, *, custom_modules: Sequence[str] = (), unsafe_deserialization: bool = False
):
    """Load a .keras/.h5 file for serving (``compile=False``: no optimizer or loss needed)."""
    import_tensorflow()
    import keras

    import_custom_modules(custom_modules)
    try:
        # safe_mode is passed per call, never switched on process-wide (enable_unsafe_deserialization).
        return keras.saving.load_model(str(path), compile=False, safe_mode=not unsafe_deserialization)
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise ModelFileTruncatedError(f"truncated model file: {path}: {exc}") from exc
        raise NotAModelError(f"model file {path} cannot be read as a {fmt} model: {exc}") from exc
    except Exception as exc:
        explained = explain_load_error(path, exc, custom_modules)
        if explained is not None:
            raise explained from exc
        raise NotAModelError(
            f"model file {path} cannot be loaded as a Keras model: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc


# --------------------------------------------------------------------------
# output names: Keras's export calls every output output_0, output_1, ...


def _auto_named(layer) -> bool:
    """True when ``layer`` kept the name Keras gives an unnamed layer (``dense``, ``dense_3``)."""
    snake = re.sub(r"\W+", "", type(layer).__name__)
    snake = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", snake)
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", snake).lower()  # Keras's own to_snake_case
    return re.fullmatch(re.escape(snake) + r"(_\d+)?", layer.name) is not None


def output_names(model) -> list[str] | None:
    """The serving names of a model's outputs: each output layer's name, ``output_<i>`` for an output
    whose layer Keras named itself (or whose name another output already has); None when the
    model names them already (a dict of outputs) or is not built from layers (a subclassed model)."""
    try:
        structure = model.output
    except (AttributeError, ValueError):
        structure = None
    tensors = getattr(model, "outputs", None)
    if isinstance(structure, dict) or not tensors:
        return None
    names: list[str] = []
    for i, tensor in enumerate(tensors):
        history = getattr(tensor, "_keras_history", None)  # (layer, node index, tensor index)
        layer = history[0] if history else None
        given = layer is not None and not _auto_named(layer) and layer.name not in names
        names.append(layer.name if given else f"output_{i}")
    return names


def serving_model(model):
    """The model to export: one whose outputs carry :func:`output_names` (clients read them in
    TF Serving's answers), or ``model`` itself when nothing would change."""
    import keras

    names = output_names(model)
    if names is None or names == [f"output_{i}" for i in range(len(names))]:
        return model
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # a Sequential model has inputs but no call node
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, dict(zip(names, model.outputs)), name=model.name)
