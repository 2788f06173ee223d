"""Every column of a reference file is accounted for: a model input, a label, the golden
predictions, or a column the config names in ``reference.ignore_columns``.

A column that is none of these is refused before anything starts, with the
nearest expected name: a misspelt label column (``lable``) would otherwise
leave the quality and regression checks without labels, and a deploy would be
promoted with neither of them run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

from servegate.validation.reference_io import ReferenceError

# pandas writes a non-default index as these columns (DataFrame.to_parquet): not the user's data.
_PANDAS_INDEX = re.compile(r"__index_level_\d+__\Z")


def _nearest(column: str, expected: list[str], present: set[str]) -> str | None:
    """The expected name closest to ``column``, preferring names the file lacks (a misspelling replaced them)."""
    missing = [name for name in expected if name not in present]
    for candidates in (missing, expected):
        close = difflib.get_close_matches(column, candidates, n=1, cutoff=0.6)
        if close:
            return close[0]
    return None


def check_every_column(path: Path, names: list[str], expected: list[str], also_known: Iterable[str],
                       ignored: list[str]) -> None:
    """Raise :class:`ReferenceError` naming each column of ``names`` that nothing reads.

    ``expected``: the names a column is looked for under (inputs, labels, the golden
    column), suggested for a misspelling; ``also_known``: further columns in use
    (golden_0, ...); ``ignored``: ``reference.ignore_columns``.
    """
    known = set(expected) | set(also_known) | set(ignored)
    unknown = [c for c in names if c not in known and not _PANDAS_INDEX.match(c)]
    if not unknown:
        return
    present = set(names)
    described = []
    for column in unknown:
        near = _nearest(column, expected, present)
        described.append(f"{column!r} (nearest expected name: {near!r})" if near else
                         f"{column!r} (no expected name is close)")
    which = "column" if len(unknown) == 1 else "columns"
    verb = "is" if len(unknown) == 1 else "are"
    listing = ", ".join(dict.fromkeys(expected))
    raise ReferenceError(
        f"reference file {path}: {which} {', '.join(described)} {verb} not a model input, a label or the golden "
        f"column (expected: {listing}); rename it, or list it in the validation config's "
        "'reference.ignore_columns' to keep it in the file unread")
