"""Checks that the store's history, its areas and MLflow tell the same story (after a kill and a repair)."""

from __future__ import annotations

from tests.reliability.harness import Workspace


def check_history_matches_areas(ws: Workspace, name: str) -> dict[int, str]:
    """Every version is in the area its last history line names, and every move was recorded by its writer.

    A ``recover`` line would mean a move whose writer's line was lost (recovery
    could not say who made it); the store's write-ahead intents leave none.
    Returns version -> area.
    """
    store = ws.model_store()
    status = store.status(name)
    areas = {v: area for area, versions in status.versions.items() for v in versions}
    history = store.history(name)
    last = {r.version: r.to_area for r in history}
    assert last == areas, f"the history says {sorted(last.items())}; the areas hold {sorted(areas.items())}"
    recovered = [(r.version, r.reason) for r in history if r.operation == "recover"]
    assert not recovered, f"moves recorded by recovery without their writer: {recovered}"
    intents = [p.name for p in store.layout.meta_dir(name).glob("intent-*")]
    assert not intents, f"intents left in the store: {intents}"
    return areas


def check_mlflow_agrees(ws: Workspace, name: str) -> str:
    """MLflow's ``champion`` is the registry version of what production serves; returns that registry version."""
    from servegate.tracking import Tracker

    serving = ws.model_store().serving_version(name)
    champion = Tracker(ws.tracking_uri).alias_version(name, "champion")
    assert champion is not None, f"MLflow has no champion; production serves {serving}"
    assert champion.tags.get("serving_version") == str(serving), (
        f"MLflow's champion is registry version {champion.version} (store version "
        f"{champion.tags.get('serving_version')}); production serves {serving}")
    return str(champion.version)
