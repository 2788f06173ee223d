"""One pass over a reference file: count rows, find NaN/null inputs and labels, check list widths.

Separate from :mod:`.reference` (column mapping) because it is the only part
that reads every row; it streams in blocks, so memory stays constant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from servegate.validation.reference_io import ReferenceError, iter_batches, list_value_type, nan_or_null

if TYPE_CHECKING:
    from servegate.validation.reference import InputColumns


def _check_nulls(path: Path, batch: pa.RecordBatch, column: str, first_row: int, labels: list[str]) -> None:
    bad = nan_or_null(batch.column(column))
    if bad.any():
        row = first_row + int(np.argmax(bad))
        what = "label column" if column in labels else "input column"
        # nan_or_null marks rows (a list cell with one NaN marks its row once): count rows, say rows
        raise ReferenceError(f"reference file {path}: {what} {column!r} has NaN/null values in {int(bad.sum())} "
                             f"row(s) of rows {first_row}..{first_row + len(batch) - 1} (first at row {row}); "
                             "expected numbers in every row")


def _check_width(path: Path, values: pa.Array, column: str, shape: tuple[int, ...], first_row: int) -> None:
    import pyarrow.compute as pc

    # A nested list (row shape [a, b]) is checked on its outer length a;
    # the reshape at send time catches a ragged inner level.
    nested = list_value_type(values.type.value_type) is not None
    width = shape[0] if nested else int(np.prod(shape))
    per_row = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    wrong = per_row != width
    if wrong.any():
        row = first_row + int(np.argmax(wrong))
        raise ReferenceError(f"reference file {path}: column {column!r} row {row} holds "
                             f"{int(per_row[np.argmax(wrong)])} values; the input needs "
                             f"{width} per row (shape {list(shape)})")


def scan(path: Path, fmt: str, mapped: dict[str, "InputColumns"], labels: list[str],
         on_batch: Callable[[pa.RecordBatch], None] | None = None) -> int:
    """The number of rows; raises :class:`ReferenceError` at the first bad value.

    ``on_batch`` sees every checked block in file order (the reference keeps a
    small file's input tensors from this one read instead of reading it again).
    """
    checked = sorted({c for m in mapped.values() for c in m.columns} | set(labels))
    list_shape = {m.columns[0]: m.row_shape for m in mapped.values() if m.is_list and m.row_shape}
    n = 0
    try:
        for batch in iter_batches(path, fmt, checked):
            for column in checked:
                _check_nulls(path, batch, column, n, labels)
                if column in list_shape:
                    _check_width(path, batch.column(column), column, list_shape[column], n)
            if on_batch is not None:
                on_batch(batch)
            n += len(batch)
    except ReferenceError:
        raise
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
        raise ReferenceError(f"reference file {path}: cannot read it as {fmt}: {exc}") from None
    if n == 0:
        raise ReferenceError(f"reference file {path}: 0 rows; expected at least one row")
    return n
