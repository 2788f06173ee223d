"""verify_served_version against a real bundled server: the version, and the smoke answer."""

from __future__ import annotations

import pytest

from servegate.deploy import ProductionVerificationError, verify_served_version
from tests import modelzoo


@pytest.fixture(scope="module")
def served(tiny_savedmodel, tmp_path_factory):
    from servegate.serving.runners import CanarySpec, make_runner

    home = tmp_path_factory.mktemp("verify-home")
    runner = make_runner("process", CanarySpec("prod", versions={7: tiny_savedmodel}),
                         state_dir=home / "canary-processes")
    try:
        runner.start()
        runner.wait_until_available(120)
        yield runner
    finally:
        runner.stop()


@pytest.mark.slow
def test_right_version_and_answer_pass_wrong_ones_fail(served, tiny_savedmodel):
    from servegate import export

    x = modelzoo.reference_inputs(n_rows=1)
    (golden,) = export.golden_predictions(tiny_savedmodel, {"features": x}).values()
    verify_served_version(served.rest_url, "prod", 7, {"features": x}, deadline_s=10, expected=golden)

    with pytest.raises(ProductionVerificationError, match=r"answered the smoke query with .* expected"):
        verify_served_version(served.rest_url, "prod", 7, {"features": x}, deadline_s=10, expected=golden + 1.0)
    with pytest.raises(ProductionVerificationError, match=r"did not serve version 8 .*available versions \[7\]"):
        verify_served_version(served.rest_url, "prod", 8, {"features": x}, deadline_s=0.5)
    # Production already serves a newer version (a deploy promoted after this one): not this
    # deploy's to verify or roll back, whatever the smoke answer would have been.
    verify_served_version(served.rest_url, "prod", 6, {"features": x}, deadline_s=0.5, expected=golden + 1.0)
