"""Reading the store's directories without the lock and without writing: versions, reasons, leftovers, numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

from servegate.model_store import counter as counter_mod
from servegate.model_store import history as history_mod
from servegate.model_store.layout import (
    AREAS,
    REJECTED,
    TMP_PREFIX,
    Layout,
    parse_reason_file_name,
    parse_tmp_name,
    parse_version_name,
)

Scan = dict[str, dict[int, Path]]  # area -> version -> its directory


def entries(base: Path) -> list[str]:
    """The names in ``base``, sorted; none when it does not exist (yet)."""
    try:
        return sorted(os.listdir(base))
    except (FileNotFoundError, NotADirectoryError):
        return []


def scan_area(layout: Layout, area: str, name: str) -> dict[int, Path]:
    """The version directories of ``name`` in ``area``, by number."""
    base = layout.base_path(area, name)
    found: dict[int, Path] = {}
    for entry in entries(base):
        version = parse_version_name(entry)
        if version is None or not (base / entry).is_dir():
            continue
        # Two spellings of one number ("5", "005"): prefer the one the store writes.
        if version not in found or entry == str(version):
            found[version] = base / entry
    return found


def scan(layout: Layout, name: str) -> Scan:
    return {area: scan_area(layout, area, name) for area in AREAS}


def reasons(layout: Layout, name: str) -> dict[int, str]:
    """Rejected version -> the reason kept beside it."""
    base = layout.base_path(REJECTED, name)
    found: dict[int, str] = {}
    for entry in entries(base):
        version = parse_reason_file_name(entry)
        if version is None:
            continue
        try:
            found[version] = str(json.loads((base / entry).read_text()).get("reason"))
        except (OSError, ValueError, AttributeError):
            found[version] = "(reason file unreadable)"
    return found


def leftovers(layout: Layout, name: str) -> list[str]:
    """Temp entries beside the versions (awaiting recovery, or a change in progress)."""
    found = []
    for area in AREAS:
        base = layout.base_path(area, name)
        found += [str(base / e) for e in entries(base) if e.startswith(TMP_PREFIX)]
    return found


def next_version(layout: Layout, name: str, scanned: Scan | None = None) -> int:
    """One above every number the model has ever used (counter, areas, temp dirs, reasons, history)."""
    scanned = scanned if scanned is not None else scan(layout, name)
    highest = counter_mod.read_counter(layout.counter_file(name))
    for area in AREAS:
        highest = max([highest, *scanned[area]])
        for entry in entries(layout.base_path(area, name)):
            parsed = parse_tmp_name(entry)
            number = parsed.version if parsed else parse_reason_file_name(entry)
            if number is None:
                number = parse_version_name(entry)  # numeric files too
            if number is not None:
                highest = max(highest, number)
    for record in history_mod.read(layout.history_file(name)):
        if isinstance(record.version, int):
            highest = max(highest, record.version)
    return highest + 1


def models(layout: Layout) -> set[str]:
    """Every directory name in the area roots and the metadata root (unchecked names included)."""
    names: set[str] = set()
    for base in [*layout.area_roots.values(), layout.meta_root()]:
        names.update(entry for entry in entries(base) if (base / entry).is_dir())
    return names


