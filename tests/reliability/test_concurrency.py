"""Deploys started at once: four of the same model, four of different models.

Each ends with the right verdict (the quality check decides: good models pass,
the broken twin fails), version numbers are distinct, promotions are
serialised (the store's history shows no two promotions holding the lock at
once), and production is consistent. When two candidates of one model race,
one that finishes validation after a newer version was promoted must not
replace it: the store refuses to promote an older version (TF Serving would
ignore it), so that attempt ends without promotion and says why.
"""

from __future__ import annotations

import pytest

from tests.reliability.harness import assert_promotions_serialised, check_clean, complete_versions

SAME = "same"


@pytest.mark.reliability
@pytest.mark.slow
def test_four_deploys_of_one_model_and_four_of_different_models_at_once(workspace, model_files):
    ws, f = workspace, model_files
    same = [ws.start_deploy(f.good, SAME, f.reference, config=f.config) for _ in range(4)]
    different = {
        "diff-a": (f.good, "promoted"), "diff-b": (f.broken, "rejected"),
        "diff-c": (f.good, "promoted"), "diff-d": (f.broken, "rejected"),
    }
    started = {name: ws.start_deploy(model, name, f.reference, config=f.config)
               for name, (model, _) in different.items()}

    finished = {name: proc.wait() for name, proc in started.items()}
    results = [p.wait() for p in same]
    # Everything has ended: now nothing may be left behind by any of the eight.
    for name, result in finished.items():
        expected = different[name][1]
        assert result.outcome and result.outcome["verdict"] == expected, result.describe()
        assert result.returncode == (0 if expected == "promoted" else 1)
        assert result.version == 1
        production = complete_versions(ws.store / "production" / name)
        assert sorted(production) == ([1] if expected == "promoted" else [])
        check_clean(ws, name)

    store = ws.model_store()
    status = store.status(SAME, history_limit=1000)
    staged = sorted(r.version for r in status.history if r.operation == "stage")
    assert staged == [1, 2, 3, 4], f"four attempts, four distinct versions: {staged}"
    promoted = []
    for result in results:
        if result.returncode == 0:
            assert result.outcome["verdict"] == "promoted", result.describe()
            promoted.append(result.version)
        else:
            # Lost the race to a newer version: not promoted, production untouched by it, a clear reason.
            assert result.returncode in (1, 2), result.describe()
            text = (result.stderr + result.stdout).lower()
            assert "older than version" in text or "newer" in text, result.describe()
    assert promoted, "at least the newest candidate is promoted"
    assert status.serving_version == max(promoted)
    assert set(status.production) <= set(promoted)
    assert_promotions_serialised(status.history)
    check_clean(ws, SAME)
