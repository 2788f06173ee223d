"""Reference data: the rows sent to the canary, and the answers expected for them.

A reference file is Parquet, CSV or JSON lines. Its columns are

- the signature's inputs: a column named after the input (a scalar column for
  an input of shape ``[-1]`` or ``[-1, 1]``, a list/array column for a
  multi-dimensional one), or several scalar columns sharing a prefix
  (``features_0, features_1, ...`` by default, or a prefix given in the config);
- optionally the labels (``label``, or one column per validated output) and the
  golden predictions that export computed in-process (``golden``, a scalar or
  list column, or ``golden_0, ...``);
- columns named in ``reference.ignore_columns`` (ids, timestamps): never read.

Any other column is refused, naming the nearest expected name
(:mod:`.reference_columns`), and so is a label column that several validated
outputs could share without ``outputs:`` saying which one it labels.

Life cycle: :func:`load_reference` checks the config against the signature
(:func:`check_config_against_signature`), opens the file, maps columns to
inputs and scans it once in batches (constant memory) to reject every bad input
*before any canary starts*: missing, unreadable or empty file (``0 rows``),
missing columns (named, with the columns that are there), wrong dtypes or
widths, list values written as CSV text, NaN/null inputs, missing or NaN
labels, quality thresholds without labels or for the wrong task. A reference whose
numeric input tensors fit in :data:`IN_MEMORY_BYTES` keeps them from that scan,
so the passes that follow (warm-up, candidate, baseline, steady load) slice
memory instead of reading and decoding the file again; a bigger one is read
again, batch by batch, while validating. The labels and golden columns (one or
a few numbers per row) are held whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from servegate.errors import naming
from servegate.validation.config import DeployConfig, load_config
from servegate.validation.outputs import OutputPlan, check_threshold_fits, plan_outputs
from servegate.validation.reference_io import (ReferenceError, detect_format, dtype_fits, flat_values, is_numeric,
                                               iter_batches, list_value_type, parquet_rows, read_schema, rebatch,
                                               text_list_sample)
from servegate.validation.reference_columns import check_every_column
from servegate.validation.reference_scan import scan
from servegate.validation.signature import Signature, TensorSpec, parse_signature

__all__ = ["InputColumns", "Reference", "ReferenceError", "check_input_rows", "load_reference"]

#: Input tensors up to this size are held in memory after the scan. Sending is then
#: bounded by the canary, not by Parquet decoding on the validating process's core;
#: a bigger reference streams in constant memory.
IN_MEMORY_BYTES = 64 << 20


@dataclass(frozen=True)
class InputColumns:
    """Where one signature input lives: one column, or several prefix columns (in order)."""

    input: str
    columns: tuple[str, ...]
    spec: TensorSpec
    is_list: bool = False  # one list/array column holding the whole row tensor

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of one row's tensor (without the batch dimension)."""
        tail = tuple(self.spec.shape[1:]) if self.spec.shape else ()
        if tail and all(d is not None for d in tail):
            return tuple(int(d) for d in tail)  # type: ignore[arg-type]
        return (len(self.columns),) if len(self.columns) > 1 else ()


@dataclass
class Reference:
    """A checked reference file, ready to be read in batches."""

    path: Path
    format: str
    n_rows: int
    signature: Signature
    inputs: dict[str, InputColumns]
    label_column: str | None = None        # the primary output's label column, when present
    golden_columns: tuple[str, ...] = ()
    golden_is_list: bool = False
    label_columns: dict[str, str] = field(default_factory=dict)  # output -> its label column (present ones)
    _labels: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _golden: np.ndarray | None = field(default=None, repr=False)
    _held: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def has_labels(self) -> bool:
        return self.label_column is not None

    @property
    def has_golden(self) -> bool:
        return bool(self.golden_columns)

    def labels(self, column: str | None = None) -> np.ndarray | None:
        """The values of a label column (default: the primary output's), read once."""
        column = column or self.label_column
        if column is None:
            return None
        if column not in self._labels:
            self._labels[column] = column_array(self, [column], False)
        return self._labels[column]

    def golden(self) -> np.ndarray | None:
        if not self.golden_columns:
            return None
        if self._golden is None:
            self._golden = column_array(self, list(self.golden_columns), self.golden_is_list)
        return self._golden

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Input tensors, ``batch_size`` rows at a time, in file order (the last batch may be short)."""
        if self._held is not None:
            for start in range(0, self.n_rows, batch_size):
                yield {name: held[start:start + batch_size] for name, held in self._held.items()}
            return
        columns = sorted({c for m in self.inputs.values() for c in m.columns})
        for batch in rebatch(iter_batches(self.path, self.format, columns), batch_size):
            yield {name: _tensor(batch, m) for name, m in self.inputs.items()}


class _Holder:
    """Collects the input tensors of each scanned block while they fit :data:`IN_MEMORY_BYTES`."""

    def __init__(self, inputs: dict[str, InputColumns]):
        self.inputs = inputs
        # String inputs are object arrays whose nbytes counts pointers, not the values: always streamed.
        self.parts: dict[str, list[np.ndarray]] | None = (
            None if any(m.spec.dtype == "string" for m in inputs.values()) else {name: [] for name in inputs})
        self.nbytes = 0

    def __call__(self, batch: pa.RecordBatch) -> None:
        if self.parts is None:
            return
        arrays = {name: _tensor(batch, m) for name, m in self.inputs.items()}
        self.nbytes += sum(a.nbytes for a in arrays.values())
        if self.nbytes > IN_MEMORY_BYTES:
            self.parts = None  # too big: stream it
            return
        for name, array in arrays.items():
            self.parts[name].append(array)

    def held(self) -> dict[str, np.ndarray] | None:
        if self.parts is None:
            return None
        out = {name: np.concatenate(parts) for name, parts in self.parts.items()}
        for array in out.values():
            array.flags.writeable = False  # batches are views of it: a caller must not change the reference
        return out


def _tensor(batch: pa.RecordBatch, m: InputColumns) -> np.ndarray:
    np_dtype = np.dtype(object) if m.spec.dtype == "string" else np.dtype(m.spec.dtype)
    if m.is_list:
        flat = flat_values(batch.column(m.columns[0]))
        try:
            arr = flat.reshape((len(batch),) + m.row_shape) if m.row_shape else flat.reshape(len(batch), -1)
        except ValueError:
            raise ReferenceError(f"column {m.columns[0]!r}: list values do not fit input {m.input!r} of shape "
                                 f"{list(m.spec.shape or [])}") from None
    elif len(m.columns) == 1:
        arr = batch.column(m.columns[0]).to_numpy(zero_copy_only=False)
        if m.row_shape:
            arr = arr.reshape((len(batch),) + m.row_shape)
    else:
        arr = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in m.columns])
        arr = arr.reshape((len(batch),) + m.row_shape)
    return arr.astype(np_dtype, copy=False)


def column_array(ref: Reference, columns: list[str], is_list: bool) -> np.ndarray:
    """Whole columns as one array (labels, golden): one value, or one row of values, per reference row."""
    parts = []
    for batch in iter_batches(ref.path, ref.format, columns):
        if is_list:
            parts.append(flat_values(batch.column(columns[0])).reshape(len(batch), -1))
        elif len(columns) == 1:
            parts.append(batch.column(columns[0]).to_numpy(zero_copy_only=False))
        else:
            parts.append(np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in columns]))
    return np.concatenate(parts) if parts else np.empty((0,))


# ------------------------------------------------------------- column mapping
def prefix_columns(names: list[str], prefix: str) -> list[str]:
    """Columns ``prefix<i>`` / ``prefix_<i>``, ordered by ``i``; [] when none."""
    pattern = re.compile(re.escape(prefix) + r"_?(\d+)\Z")
    found = [(int(m.group(1)), n) for n in names if (m := pattern.match(n))]
    return [n for _, n in sorted(found)]


def _map_input(schema: pa.Schema, name: str, spec: TensorSpec, config: DeployConfig) -> InputColumns | str:
    """The columns of input ``name``, or a string saying why none fit."""
    names = schema.names
    cols, prefixes = config.reference.columns, config.reference.prefixes
    if name in prefixes:
        found = prefix_columns(names, prefixes[name])
        if not found:
            return f"input {name!r}: no columns with prefix {prefixes[name]!r} (field 'reference.prefixes')"
        return InputColumns(name, tuple(found), spec)
    column = cols.get(name, name)
    if column in names:
        return InputColumns(name, (column,), spec, is_list=list_value_type(schema.field(column).type) is not None)
    if name in cols:
        return f"input {name!r}: configured column {column!r} (field 'reference.columns') is not in the file"
    found = prefix_columns(names, name)
    if found:
        return InputColumns(name, tuple(found), spec)
    return f"input {name!r}: no column {name!r} and no columns {name}_0, {name}_1, ..."


LIST_LAYOUTS = ("one scalar column per value with a shared prefix ({input}_0, {input}_1, ..., or "
                "'reference.prefixes'), or JSON lines / Parquet with a list column")


def _check_types(path: Path, fmt: str, schema: pa.Schema, m: InputColumns) -> None:
    expected = m.spec.dtype
    for column in m.columns:
        t = schema.field(column).type
        inner = list_value_type(t) if m.is_list else t
        if inner is not None and dtype_fits(inner, expected):
            continue
        sample = text_list_sample(path, fmt, column) if expected != "string" else None
        if sample is not None:
            raise ReferenceError(
                f"reference file {path}: column {column!r} holds list values written as text ({sample[:40]!r}); "
                f"a CSV cell cannot hold a list. Input {m.input!r} needs {expected} values: use "
                + LIST_LAYOUTS.format(input=m.input))
        raise ReferenceError(f"reference file {path}: column {column!r} has type {t}, but input {m.input!r} "
                             f"needs {expected}")
    width = int(np.prod(m.row_shape)) if m.row_shape else 1
    if not m.is_list and len(m.columns) != width:
        raise ReferenceError(f"reference file {path}: input {m.input!r} has shape {list(m.spec.shape or [])} "
                             f"({width} values per row) but maps to {len(m.columns)} column(s) "
                             f"{list(m.columns)[:8]}")


def _open(path: Path) -> tuple[str, pa.Schema]:
    if not path.exists():
        raise ReferenceError(f"reference file {path}: no such file")
    if not path.is_file():
        raise ReferenceError(f"reference file {path}: not a regular file")
    fmt = detect_format(path)
    try:
        with path.open("rb") as fh:
            if not fh.read(1):
                raise ReferenceError(f"reference file {path}: empty file (0 bytes)")
    except OSError as exc:
        raise ReferenceError(f"reference file {path}: cannot read it ({exc.strerror or exc})") from None
    schema = read_schema(path, fmt)
    # Before any type test: an empty pandas frame saved as Parquet has columns of
    # type null, and "type null" would hide the real problem.
    if fmt == "parquet" and parquet_rows(path) == 0:
        raise ReferenceError(f"reference file {path}: 0 rows (columns: {', '.join(schema.names[:20])}); "
                             "expected at least one row")
    return fmt, schema


def _map_inputs(path: Path, fmt: str, schema: pa.Schema, sig: Signature,
                config: DeployConfig) -> dict[str, InputColumns]:
    mapped: dict[str, InputColumns] = {}
    problems: list[str] = []
    for name, spec in sorted(sig.inputs.items()):
        m = _map_input(schema, name, spec, config)
        if isinstance(m, str):
            problems.append(m)
        else:
            mapped[name] = m
    if problems:
        raise ReferenceError(f"reference file {path}: lacks columns the signature needs: " + "; ".join(problems)
                             + f". Columns present: {', '.join(schema.names[:20])}"
                             + (" ..." if len(schema.names) > 20 else ""))
    for m in mapped.values():
        _check_types(path, fmt, schema, m)
    return mapped


def _one_output_per_label(path: Path, schema: pa.Schema, plans: list[OutputPlan], config: DeployConfig) -> None:
    """Refuse a label column that several validated outputs would share without the config saying so."""
    shared = [p for p in plans if not p.own_label and p.label_column is not None]
    column = config.reference.label_column
    if len(shared) < 2 or column not in schema.names:
        return
    names = [p.name for p in shared]
    raise config.error("outputs", (
        f"the reference {path} has a label column {column!r} and the model has {len(names)} outputs it could "
        f"belong to ({', '.join(names)}); say which output it labels: outputs: {{{names[0]}: {{label_column: "
        f"{column}}}, {names[1]}: {{}}}} (every listed output is validated; one without labels still gets the "
        f"parity, sanity and drift checks), or validate one output: output: {names[0]}"))


def _label_columns(path: Path, schema: pa.Schema, plans: list[OutputPlan], config: DeployConfig) -> dict[str, str]:
    """output -> label column, for the outputs whose label column is in the file."""
    found: dict[str, str] = {}
    for plan in plans:
        column = plan.label_column
        if column is None or column not in schema.names:
            needs = sorted(plan.quality.thresholds())
            if config.quality.enabled or plan.quality.enabled or needs:
                why = f"quality thresholds {needs} are set" if needs else "quality check is enabled"
                lacking = (f"there is no label column {column!r}" if column else "its label column belongs to "
                           f"another output (set outputs.{plan.name}.label_column)")
                raise ReferenceError(f"reference file {path}: {why} for output {plan.name!r} but {lacking} "
                                     f"(columns: {', '.join(schema.names[:20])})")
            continue
        if not is_numeric(schema.field(column).type):
            raise ReferenceError(f"reference file {path}: label column {column!r} has type "
                                 f"{schema.field(column).type}; expected numbers")
        found[plan.name] = column
    return found


def _golden_columns(schema: pa.Schema, config: DeployConfig) -> tuple[tuple[str, ...], bool]:
    column = config.reference.golden_column
    if column in schema.names:
        return (column,), list_value_type(schema.field(column).type) is not None
    return tuple(prefix_columns(schema.names, column)), False


def load_reference(path: str | Path, signature: Any, config: DeployConfig | Any = None) -> Reference:
    """Open and check a reference file against ``signature``; see the module docstring.

    ``signature`` is anything :func:`parse_signature` reads (export's record,
    TF Serving metadata, a plain mapping). Raises :class:`ReferenceError` or
    :class:`ValidationConfigError`. Imports neither TensorFlow, Prefect nor MLflow.
    """
    config = load_config(config)
    path = Path(path)
    with naming(path):  # a reference error's subject is the file (its message names the column)
        return _load_reference(path, signature, config)


def _load_reference(path: Path, signature: Any, config: DeployConfig) -> Reference:
    sig = parse_signature(signature, config.signature_name)
    plans = plan_outputs(config, sig) if sig.outputs else []
    fmt, schema = _open(path)
    mapped = _map_inputs(path, fmt, schema, sig, config)
    golden, golden_is_list = _golden_columns(schema, config)
    label_names = [p.label_column for p in plans if p.label_column] or [config.reference.label_column]
    check_every_column(path, schema.names, [c for m in mapped.values() for c in m.columns] + label_names
                       + [config.reference.golden_column], golden, config.reference.ignore_columns)
    _one_output_per_label(path, schema, plans, config)
    labels = _label_columns(path, schema, plans, config)
    holder = _Holder(mapped)
    n_rows = scan(path, fmt, mapped, sorted(set(labels.values())), holder)
    primary = labels.get(plans[0].name) if plans else (
        config.reference.label_column if config.reference.label_column in schema.names else None)
    ref = Reference(path, fmt, n_rows, sig, mapped, primary, golden, golden_is_list, labels,
                    _held=holder.held())
    _check_tasks_from_labels(ref, plans, config)
    return ref


def check_input_rows(path: str | Path, signature: Any, config: DeployConfig | Any = None) -> int:
    """The checks of :func:`load_reference` that need only the model's inputs: the file opens and has
    rows, every input maps to columns of the right type, no input value is null or NaN. Returns the
    row count. The deploy runs it before the export, with inputs read from the model's files."""
    config = load_config(config)
    path = Path(path)
    with naming(path):
        sig = parse_signature(signature, config.signature_name)
        fmt, schema = _open(path)
        return scan(path, fmt, _map_inputs(path, fmt, schema, sig, config), [])


def _check_tasks_from_labels(ref: Reference, plans: list[OutputPlan], config: DeployConfig) -> None:
    """Labels that are not all 0/1 make a one-value output a regression: refuse classification thresholds now."""
    for plan in plans:
        column = ref.label_columns.get(plan.name)
        if plan.task != "auto" or column is None or (plan.width or 1) != 1:
            continue
        values = np.asarray(ref.labels(column), dtype="float64")
        if not np.isin(values, (0.0, 1.0)).all():
            check_threshold_fits(config, plan, "regression",
                                 f"one value per row and the labels in {column!r} are not all 0/1")
