"""Reading reference files: formats, streaming batches, Arrow type tests (no validation logic).

Parquet, CSV and JSON lines are read through pyarrow in bounded blocks, so a
big reference never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from servegate.errors import ValidationInputError


class ReferenceError(ValidationInputError):
    """The reference data cannot be used; the message names the file and what is wrong."""


FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
# Rows read per block while scanning; bounded so a big file never sits in memory whole.
SCAN_BATCH_ROWS = 65_536


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ReferenceError(f"reference file {path}: unknown format {path.suffix!r}; expected one of "
                             f"{', '.join(sorted(FORMATS))}")
    return fmt


def iter_batches(path: Path, fmt: str, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
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


def rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
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


def read_schema(path: Path, fmt: str) -> pa.Schema:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).schema_arrow
        first = next(iter_batches(path, fmt, None), None)
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
        raise ReferenceError(f"reference file {path}: cannot read it as {fmt}: {exc}") from None
    if first is None:
        raise ReferenceError(f"reference file {path}: no rows")
    return first.schema


def flat_values(values: pa.Array) -> np.ndarray:
    """Every leaf value of a (possibly nested) list array, in row order."""
    while list_value_type(values.type) is not None:
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False)


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def list_value_type(t: pa.DataType) -> pa.DataType | None:
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = t.value_type
        while pa.types.is_list(inner) or pa.types.is_large_list(inner) or pa.types.is_fixed_size_list(inner):
            inner = inner.value_type
        return inner
    return None


def dtype_fits(column_type: pa.DataType, dtype: str) -> bool:
    if dtype == "string":
        return pa.types.is_string(column_type) or pa.types.is_large_string(column_type) or pa.types.is_binary(column_type)
    if dtype == "bool":
        return pa.types.is_boolean(column_type) or pa.types.is_integer(column_type)
    if dtype.startswith(("int", "uint")):
        return pa.types.is_integer(column_type) or pa.types.is_boolean(column_type)
    return is_numeric(column_type)  # float inputs accept ints and floats


def nan_or_null(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean mask: which rows are null or (for floats, inside lists too) NaN."""
    mask = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    t = values.type
    inner = list_value_type(t)
    if inner is not None:
        if pa.types.is_floating(inner):
            import pyarrow.compute as pc

            flat = pc.list_flatten(values)
            while list_value_type(flat.type) is not None:
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




def parquet_rows(path: Path) -> int | None:
    """The row count a Parquet file's footer declares (None for other formats or an unreadable footer)."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError):
        return None


def text_list_sample(path: Path, fmt: str, column: str) -> str | None:
    """The first value of a text column when it looks like a list written as text ("[0.1, 0.2]"), else None.

    CSV has no list type: pandas writes a list column as its Python repr, which
    arrives here as a string column that no numeric input can take.
    """
    if fmt != "csv":
        return None
    first = next(iter_batches(path, fmt, [column]), None)
    if first is None or not len(first):
        return None
    value = first.column(0)[0].as_py()
    return value if isinstance(value, str) and value.lstrip().startswith(("[", "(")) else None
