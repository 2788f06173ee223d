"""``servegate demo`` with ``SERVEGATE_STORE`` set (a bucket on a real SeaweedFS, or a directory): refused up
front, naming the variable, its value and what to use instead; nothing written to the store or HOME."""

from __future__ import annotations

import pytest

from servegate.object_store import versions as v
from tests.object_store.test_cli_deploy import run_cli


@pytest.mark.parametrize("kind", ["bucket", "directory"])
def test_demo_refuses_a_configured_store(tmp_path, seaweed, s3_location, kind):
    home = tmp_path / "home"
    home.mkdir()
    configured = s3_location.uri if kind == "bucket" else str(tmp_path / "my-store")
    result = run_cli(home, "demo", env={**seaweed.env(), "SERVEGATE_STORE": configured})
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: SERVEGATE_STORE {configured!r}: the demo keeps its own store in its work dir"), last
    assert "servegate deploy, servegate serve" in last and "Traceback" not in result.stderr
    assert sorted(p.name for p in home.iterdir()) == []  # no work dir, no log, no Prefect
    assert v.list_keys(seaweed.client(), s3_location, s3_location.key("")) == []
    assert not (tmp_path / "my-store").exists()
