"""Reference data: the rows sent to the canary, and the answers expected for them.

A reference file is Parquet, CSV or JSON lines. Its columns are

- the signature's inputs: a column named after the input (a scalar column for
  an input of shape ``[-1]`` or ``[-1, 1]``, a list/array column for a
  multi-dimensional one), or several scalar columns sharing a prefix
  (``features_0, features_1, ...`` by default, or a prefix given in the config);
- optionally the labels (``label``) and the golden predictions that export
  computed in-process (``golden``, a scalar or list column, or ``golden_0, ...``).

Life cycle: :func:`load_reference` opens the file, maps columns to inputs and
scans it once in batches (constant memory) to reject every bad input *before
any canary starts*: missing, unreadable or empty file, missing columns (named,
with the columns that are there), wrong dtypes or widths, NaN/null inputs,
missing or NaN labels when the quality check is required. The returned
:class:`Reference` is then read again, batch by batch, while validating; only
the labels and golden columns (one or a few numbers per row) are held whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from servegate.errors import ValidationInputError
from servegate.validation.config import ValidationConfig
from servegate.validation.signature import Signature, TensorSpec, parse_signature


class ReferenceError(ValidationInputError):
    """The reference data cannot be used; the message names the file and what is wrong."""


FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
# Rows read per block while scanning; bounded so a big file never sits in memory whole.
SCAN_BATCH_ROWS = 65_536


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
    label_column: str | None = None
    golden_columns: tuple[str, ...] = ()
    golden_is_list: bool = False
    _labels: np.ndarray | None = field(default=None, repr=False)
    _golden: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_labels(self) -> bool:
        return self.label_column is not None

    @property
    def has_golden(self) -> bool:
        return bool(self.golden_columns)

    def labels(self) -> np.ndarray | None:
        if self.label_column is None:
            return None
        if self._labels is None:
            self._labels = _column_array(self, [self.label_column], False)
        return self._labels

    def golden(self) -> np.ndarray | None:
        if not self.golden_columns:
            return None
        if self._golden is None:
            self._golden = _column_array(self, list(self.golden_columns), self.golden_is_list)
        return self._golden

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Input tensors, ``batch_size`` rows at a time, in file order (the last batch may be short)."""
        columns = sorted({c for m in self.inputs.values() for c in m.columns})
        for batch in _rebatch(_iter_batches(self.path, self.format, columns), batch_size):
            yield {name: _tensor(batch, m) for name, m in self.inputs.items()}


def _tensor(batch: pa.RecordBatch, m: InputColumns) -> np.ndarray:
    np_dtype = np.dtype(object) if m.spec.dtype == "string" else np.dtype(m.spec.dtype)
    if m.is_list:
        flat = _flat_values(batch.column(m.columns[0]))
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


# ----------------------------------------------------------------- file access
def _detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ReferenceError(f"reference file {path}: unknown format {path.suffix!r}; expected one of "
                             f"{', '.join(sorted(FORMATS))}")
    return fmt


def _iter_batches(path: Path, fmt: str, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # pre_buffer=False streams pages: with pre-buffering, pyarrow holds whole
        # row groups of every column read (hundreds of MB for a big reference).
        yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=SCAN_BATCH_ROWS, columns=columns)
        return
    if fmt == "csv":
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(path, convert_options=pcsv.ConvertOptions(include_columns=columns),
                               read_options=pcsv.ReadOptions(block_size=8 << 20))
    else:
        import pyarrow.json as pjson

        reader = pjson.open_json(path, read_options=pjson.ReadOptions(block_size=8 << 20))
    for batch in reader:
        yield batch.select(columns) if columns is not None else batch


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += len(batch)
        while count >= size:
            table = pa.Table.from_batches(pending)
            head, rest = table.slice(0, size), table.slice(size)
            yield head.combine_chunks().to_batches()[0]
            pending = rest.to_batches() if len(rest) else []
            count = len(rest)
    if count:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _schema(path: Path, fmt: str) -> pa.Schema:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).schema_arrow
        first = next(_iter_batches(path, fmt, None), None)
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
        raise ReferenceError(f"reference file {path}: cannot read it as {fmt}: {exc}") from None
    if first is None:
        raise ReferenceError(f"reference file {path}: no rows")
    return first.schema


def _flat_values(values: pa.Array) -> np.ndarray:
    """Every leaf value of a (possibly nested) list array, in row order."""
    while _list_value_type(values.type) is not None:
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False)


def _column_array(ref: Reference, columns: list[str], is_list: bool) -> np.ndarray:
    parts = []
    for batch in _iter_batches(ref.path, ref.format, columns):
        if is_list:
            parts.append(_flat_values(batch.column(columns[0])).reshape(len(batch), -1))
        elif len(columns) == 1:
            parts.append(batch.column(columns[0]).to_numpy(zero_copy_only=False))
        else:
            parts.append(np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in columns]))
    return np.concatenate(parts) if parts else np.empty((0,))


# ------------------------------------------------------------- column mapping
def _prefix_columns(names: list[str], prefix: str) -> list[str]:
    """Columns ``prefix<i>`` / ``prefix_<i>``, ordered by ``i``; [] when none."""
    pattern = re.compile(re.escape(prefix) + r"_?(\d+)\Z")
    found = [(int(m.group(1)), n) for n in names if (m := pattern.match(n))]
    return [n for _, n in sorted(found)]


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _list_value_type(t: pa.DataType) -> pa.DataType | None:
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = t.value_type
        while pa.types.is_list(inner) or pa.types.is_large_list(inner) or pa.types.is_fixed_size_list(inner):
            inner = inner.value_type
        return inner
    return None


def _dtype_fits(column_type: pa.DataType, dtype: str) -> bool:
    if dtype == "string":
        return pa.types.is_string(column_type) or pa.types.is_large_string(column_type) or pa.types.is_binary(column_type)
    if dtype == "bool":
        return pa.types.is_boolean(column_type) or pa.types.is_integer(column_type)
    if dtype.startswith(("int", "uint")):
        return pa.types.is_integer(column_type) or pa.types.is_boolean(column_type)
    return _is_numeric(column_type)  # float inputs accept ints and floats


def _map_input(path: Path, schema: pa.Schema, name: str, spec: TensorSpec, config: ValidationConfig) -> InputColumns | str:
    """The columns of input ``name``, or a string saying why none fit."""
    names = schema.names
    cols = config.reference.columns
    prefixes = config.reference.prefixes
    if name in prefixes:
        found = _prefix_columns(names, prefixes[name])
        if not found:
            return f"input {name!r}: no columns with prefix {prefixes[name]!r}"
        return InputColumns(name, tuple(found), spec)
    column = cols.get(name, name)
    if column in names:
        t = schema.field(column).type
        inner = _list_value_type(t)
        if inner is not None:
            return InputColumns(name, (column,), spec, is_list=True)
        return InputColumns(name, (column,), spec)
    if name in cols:
        return f"input {name!r}: configured column {column!r} is not in the file"
    found = _prefix_columns(names, name)
    if found:
        return InputColumns(name, tuple(found), spec)
    return f"input {name!r}: no column {name!r} and no columns {name}_0, {name}_1, ..."


def _check_types(path: Path, schema: pa.Schema, m: InputColumns) -> None:
    expected = m.spec.dtype
    for column in m.columns:
        t = schema.field(column).type
        inner = _list_value_type(t) if m.is_list else t
        if inner is None or not _dtype_fits(inner, expected):
            raise ReferenceError(f"reference file {path}: column {column!r} has type {t}, but input {m.input!r} "
                                 f"needs {expected}")
    width = int(np.prod(m.row_shape)) if m.row_shape else 1
    if not m.is_list and len(m.columns) != width:
        raise ReferenceError(f"reference file {path}: input {m.input!r} has shape {list(m.spec.shape or [])} "
                             f"({width} values per row) but maps to {len(m.columns)} column(s) "
                             f"{list(m.columns)[:8]}")


def _nan_or_null(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean mask: which rows are null or (for floats, inside lists too) NaN."""
    mask = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    t = values.type
    inner = _list_value_type(t)
    if inner is not None:
        if pa.types.is_floating(inner):
            import pyarrow.compute as pc

            flat = pc.list_flatten(values)
            while _list_value_type(flat.type) is not None:
                flat = pc.list_flatten(flat)
            bad = np.isnan(flat.to_numpy(zero_copy_only=False).astype("float64"))
            if bad.any():
                parents = pc.list_parent_indices(values).to_numpy()
                if len(parents) == len(bad):
                    mask[parents[bad]] = True
                else:
                    mask[:] |= True
        return mask
    if pa.types.is_floating(t):
        arr = values.to_numpy(zero_copy_only=False).astype("float64")
        mask |= np.isnan(arr)
    return mask


def load_reference(path: str | Path, signature: Any, config: ValidationConfig | None = None) -> Reference:
    """Open and check a reference file against ``signature``; see the module docstring.

    ``signature`` is anything :func:`parse_signature` reads (export's record,
    TF Serving metadata, a plain mapping). Raises :class:`ReferenceError`.
    """
    config = config or ValidationConfig()
    path = Path(path)
    sig = parse_signature(signature, config.signature_name)
    if not path.exists():
        raise ReferenceError(f"reference file {path}: no such file")
    if not path.is_file():
        raise ReferenceError(f"reference file {path}: not a regular file")
    fmt = _detect_format(path)
    try:
        with path.open("rb") as fh:
            if not fh.read(1):
                raise ReferenceError(f"reference file {path}: empty file (0 bytes)")
    except OSError as exc:
        raise ReferenceError(f"reference file {path}: cannot read it ({exc.strerror or exc})") from None
    schema = _schema(path, fmt)

    mapped: dict[str, InputColumns] = {}
    problems: list[str] = []
    for name, spec in sorted(sig.inputs.items()):
        m = _map_input(path, schema, name, spec, config)
        if isinstance(m, str):
            problems.append(m)
        else:
            mapped[name] = m
    if problems:
        raise ReferenceError(f"reference file {path}: lacks columns the signature needs: " + "; ".join(problems)
                             + f". Columns present: {', '.join(schema.names[:20])}"
                             + (" ..." if len(schema.names) > 20 else ""))
    for m in mapped.values():
        _check_types(path, schema, m)

    rc = config.reference
    label = rc.label_column if rc.label_column in schema.names else None
    if label is None and config.quality.enabled:
        raise ReferenceError(f"reference file {path}: quality check is enabled but there is no label column "
                             f"{rc.label_column!r}")
    if label is not None and not _is_numeric(schema.field(label).type):
        raise ReferenceError(f"reference file {path}: label column {label!r} has type {schema.field(label).type}; "
                             "expected numbers")
    golden: tuple[str, ...] = ()
    golden_is_list = False
    if rc.golden_column in schema.names:
        golden = (rc.golden_column,)
        golden_is_list = _list_value_type(schema.field(rc.golden_column).type) is not None
    else:
        golden = tuple(_prefix_columns(schema.names, rc.golden_column))

    n_rows = _scan(path, fmt, mapped, label)
    return Reference(path, fmt, n_rows, sig, mapped, label, golden, golden_is_list)


def _scan(path: Path, fmt: str, mapped: dict[str, InputColumns], label: str | None) -> int:
    """One pass over the file: count rows, find NaN/null inputs and labels, check list widths."""
    checked = sorted({c for m in mapped.values() for c in m.columns} | ({label} if label else set()))
    list_shape = {m.columns[0]: m.row_shape for m in mapped.values() if m.is_list and m.row_shape}
    n = 0
    try:
        for batch in _iter_batches(path, fmt, checked):
            for column in checked:
                values = batch.column(column)
                bad = _nan_or_null(values)
                if bad.any():
                    row = n + int(np.argmax(bad))
                    what = "label column" if column == label else "input column"
                    raise ReferenceError(f"reference file {path}: {what} {column!r} has {int(bad.sum())} NaN/null "
                                         f"value(s) in rows {n}..{n + len(batch) - 1} (first at row {row})")
                if column in list_shape:
                    import pyarrow.compute as pc

                    # A nested list (row shape [a, b]) is checked on its outer length a;
                    # the reshape at send time catches a ragged inner level.
                    shape = list_shape[column]
                    nested = _list_value_type(values.type.value_type) is not None
                    width = shape[0] if nested else int(np.prod(shape))
                    per_row = pc.list_value_length(values).to_numpy(zero_copy_only=False)
                    wrong = per_row != width
                    if wrong.any():
                        row = n + int(np.argmax(wrong))
                        raise ReferenceError(f"reference file {path}: column {column!r} row {row} holds "
                                             f"{int(per_row[np.argmax(wrong)])} values; the input needs "
                                             f"{width} per row (shape {list(shape)})")
            n += len(batch)
    except ReferenceError:
        raise
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
        raise ReferenceError(f"reference file {path}: cannot read it as {fmt}: {exc}") from None
    if n == 0:
        raise ReferenceError(f"reference file {path}: no rows")
    return n
