"""Model names and version numbers: nothing can address a path outside the store."""

from __future__ import annotations

import pytest

from servegate.model_store import InvalidModelName, ModelStore
from servegate.model_store.errors import InvalidVersion
from servegate.model_store.layout import check_model_name, check_version, parse_tmp_name, tmp_name

GOOD = ["mnist", "half_plus_two", "a", "A1", "m.v2", "m-1", "123", "x" * 128]
BAD = ["", "../x", "..", ".", "a/b", "/abs", "x/../y", "a..b", ".hidden", "-x", "_x", "x" * 129, "x" * 300,
       "a b", "a\x00b", "é", "a\\b", "a\nb"]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_refused_with_the_name(name):
    with pytest.raises(InvalidModelName) as err:
        check_model_name(name)
    message = str(err.value)
    assert "model name" in message and "expected" in message
    if not name:
        assert "empty" in message
    elif len(name) > 128:
        assert "too long" in message and f"({len(name)} characters)" in message
    else:
        assert repr(name) in message


@pytest.mark.parametrize("name", BAD)
def test_no_path_method_accepts_a_bad_name(name, tmp_path):
    store = ModelStore(tmp_path / "store")
    for area in ("staging", "production", "rejected"):
        with pytest.raises(InvalidModelName):
            store.base_path(area, name)
        with pytest.raises(InvalidModelName):
            store.version_path(area, name, 1)


def test_paths_stay_inside_the_root(tmp_path):
    store = ModelStore(tmp_path / "store")
    for name in GOOD:
        for area in ("staging", "production", "rejected"):
            path = store.version_path(area, name, 7)
            assert path.resolve().is_relative_to((tmp_path / "store").resolve())
            assert path.parent.name == name and path.name == "7"


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "abc", None, 2**63])
def test_bad_versions(bad):
    with pytest.raises(InvalidVersion):
        check_version(bad)


def test_temp_names_round_trip():
    parsed = parse_tmp_name(tmp_name("stage", 12, "345-abcdef01"))
    assert (parsed.kind, parsed.version, parsed.token) == ("stage", 12, "345-abcdef01")
    assert tmp_name("stage", 12, "345-abcdef01").startswith(".")  # TF Serving ignores it
    assert parse_tmp_name(".DS_Store") is None
