"""The one release path: every change to what production serves goes through here.

Promote, reject and rollback, whether they come from ``servegate rollback``,
the ``rollback-model`` flow, a deploy's undo or a later automatic rollback,
are one call each on :class:`Release`. In the same call that changes the store
(:class:`servegate.model_store.ModelStore`), MLflow is brought in step
(:class:`servegate.tracking.Tracker`):

- ``champion`` names the registry version of what production serves, and no
  version when production serves nothing;
- a version taken out of production is tagged verdict ``rolled_back`` with the
  reason, a rejected candidate ``rejected``; every moved version's ``store_path``
  tag says where its bytes are now;
- every rollback (also a reject that takes the served version out of
  production) is a finished MLflow run of its own: ``servegate.action=rollback``,
  from/to versions, the reason, and the run that caused it;
- every rollback that changed production emits ``servegate.model.rolled_back``
  (:func:`servegate.flows.events.emit_rollback`) to the Prefect API, whoever
  called: ``servegate rollback``, the ``rollback-model`` flow. A deploy builds
  its Release with ``announce=False``: it emits its own verdict's event (the
  same name, with the alarm and the figures) once its outcome is known, and
  one change of production is one event.

The store moves first and refuses bad requests before anything changes, so a
refused request leaves no MLflow run. MLflow's side runs under the model's
store lock and reads production afresh, so concurrent changes cannot leave
``champion`` naming a version production no longer serves. When MLflow fails
after the store moved, :class:`ReleaseNotRecorded` says what production serves
and how to bring MLflow in step.

```python
from servegate.release import Release
rel = Release(store_root=None, tracking_uri=None)        # or Release(store=ModelStore, tracker=Tracker)
rel.promote(name, version, run_id=None) -> ReleaseResult
rel.reject(name, version, reason, run_id=None) -> ReleaseResult
rel.rollback(name, to_version=None, reason="...", run_id=None, flow_run_id=None) -> ReleaseResult
```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from servegate.errors import ServegateError, TrackingError

if TYPE_CHECKING:
    from servegate.model_store import ModelStore
    from servegate.tracking import Tracker

DEFAULT_ROLLBACK_REASON = "rolled back on request"


class ReleaseNotRecorded(TrackingError):
    """The store changed, but MLflow could not be brought in step."""


@dataclass
class ReleaseResult:
    """What one release call did to production and where it was recorded."""

    model_name: str
    action: str                      # "promote" | "reject" | "rollback"
    from_version: int | None         # what production served before
    to_version: int | None           # what production serves now
    versions: list[int] = field(default_factory=list)  # versions this call moved (newest first for rollback)
    reason: str | None = None
    mlflow_run_id: str | None = None  # the rollback's own run (rollback, and a reject of the served version)
    champion_registry_version: str | None = None
    changed: bool = True
    production_path: str | None = None
    event_id: str | None = None       # the servegate.model.rolled_back event emitted (None: none was)
    event_error: str | None = None    # why it could not be sent (production changed all the same)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Release:
    """Promote, reject, roll back: the store and MLflow, changed together."""

    def __init__(self, store_root: Path | str | None = None, tracking_uri: str | None = None, *,
                 store: ModelStore | None = None, tracker: Tracker | None = None,
                 lock_timeout: float | None = None, announce: bool = True) -> None:
        if store is None:
            from servegate.object_store.mirror import open_model_store
            from servegate.settings import resolve_store_root

            options = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
            store = open_model_store(resolve_store_root(store_root, "store", object_store=True), **options)
        self.store = store
        self._tracker = tracker
        self._tracking_uri = tracking_uri if tracker is None else tracker.tracking_uri
        self.announce = announce

    @property
    def tracker(self) -> Tracker:
        """Opened on first use: a request the store refuses never opens MLflow."""
        if self._tracker is None:
            from servegate.tracking import Tracker

            self._tracker = Tracker(self._tracking_uri)
        return self._tracker

    # ------------------------------------------------------------------ the three verbs

    def promote(self, name: str, version: int, run_id: str | None = None) -> ReleaseResult:
        """Staged ``version`` into production; ``champion`` follows."""
        before, production = self._production(name)
        self._check_tracking()
        self.store.promote(name, version, run_id=run_id)
        moved = [] if version in production else [version]
        retired = sorted(set(production) - set(self.store.versions(name, "production")))  # retention
        return self._in_step(name, "promote", before, moved, lambda result: self._locate(name, moved + retired))

    def reject(self, name: str, version: int, reason: str, run_id: str | None = None) -> ReleaseResult:
        """``version`` (staged, or in production: a promote undone) to ``rejected/`` with ``reason``.

        Its registry version gets verdict ``rejected``, or ``rolled_back`` when
        production served it (then the change is also recorded as a rollback
        run); ``champion`` follows production.
        """
        before, _ = self._production(name)
        self._check_tracking()
        already = version in self.store.versions(name, "rejected")
        self.store.reject(name, version, reason, run_id=run_id)
        served = before == version and not already
        verdict = "rolled_back" if served else "rejected"

        def record(result: ReleaseResult) -> None:
            self._mark(name, [version], verdict, reason)
            if served:
                result.mlflow_run_id = self._record_rollback(result, run_id, None)

        result = self._in_step(name, "reject", before, [] if already else [version], record, reason=reason)
        return self._announce(result, None) if served else result

    def rollback(self, name: str, to_version: int | None = None, reason: str = DEFAULT_ROLLBACK_REASON,
                 run_id: str | None = None, flow_run_id: str | None = None) -> ReleaseResult:
        """Production back to the previous version (or ``to_version``); newer ones to ``rejected/``.

        ``run_id``: the run that caused it (a deploy's MLflow run, an ops ticket),
        kept in the store's history and on the rollback run. Every call is a
        recorded run, also one that finds production already at ``to_version``.
        """
        self._check_tracking()
        moved_by_store = self.store.rollback(name, to_version=to_version, run_id=run_id, reason=reason)
        before, moved = moved_by_store.from_version, moved_by_store.rejected  # as seen under the store's lock

        def record(result: ReleaseResult) -> None:
            self._mark(name, moved, "rolled_back", reason)
            result.mlflow_run_id = self._record_rollback(result, run_id, flow_run_id)

        return self._announce(self._in_step(name, "rollback", before, moved, record, reason=reason), flow_run_id)

    def _announce(self, result: ReleaseResult, flow_run_id: str | None) -> ReleaseResult:
        """``servegate.model.rolled_back`` for a change of production (not for one that changed nothing)."""
        if self.announce and result.changed:
            # Up a floor, lazily: the event is the release path's to send (every rollback, whoever asks),
            # and its shape is the deploy flow's (flows/events.py), so Automations see one kind of event.
            from servegate.flows.events import emit_rollback

            try:
                result.event_id = emit_rollback(result.to_dict(), flow_run_id)
            except ServegateError as exc:  # production moved and MLflow says so: reported, not undone
                result.event_error = str(exc)
        return result

    # ------------------------------------------------------------------ MLflow in step

    def _in_step(self, name: str, action: str, before: int | None, moved: list[int],
                 record: Callable[[ReleaseResult], None], reason: str | None = None) -> ReleaseResult:
        """After the store's change: champion, tags and runs, under the model's lock (see module doc)."""
        result = ReleaseResult(name, action, before, None, list(moved), reason, changed=bool(moved),
                               production_path=str(self.store.base_path("production", name)))
        try:
            with self.store.lock(name, operation=f"release-{action}"):
                result.to_version = self.store.serving_version(name)
                result.champion_registry_version = self.tracker.set_champion(name, result.to_version)
                record(result)
        except ServegateError as exc:
            serving = self.store.serving_version(name)
            repair = (f"`servegate rollback --name {name} --to {serving}` records production as it is and moves "
                      "champion" if serving is not None else "the next promote moves champion")
            raise ReleaseNotRecorded(
                f"{action} of model {name!r}: the store changed (production serves {_shown(serving)}), but MLflow at "
                f"{self._uri()} was not brought in step: {exc}. Once MLflow answers, {repair}") from exc
        return result

    def _mark(self, name: str, versions: list[int], verdict: str, reason: str) -> None:
        """Verdict, reason and new location on the registry versions of ``versions`` (unregistered: skipped)."""
        from servegate.tracking.registry import verdict_tags

        self._locate(name, versions, verdict_tags(verdict, [reason]))

    def _locate(self, name: str, versions: list[int], extra: dict[str, str] | None = None) -> None:
        """Tag each version's registry version with where its bytes are now (``store_path``) and ``extra``."""
        for version in versions:
            mv = self.tracker.find_version(name, version)
            if mv is None:
                continue
            where = self._where(name, version)
            tags = {**({"store_path": str(where)} if where else {}), **(extra or {})}
            self.tracker.tag_version(name, str(mv.version), tags)

    def _where(self, name: str, version: int) -> Path | None:
        paths = (self.store.version_path(area, name, version) for area in ("production", "rejected", "staging"))
        return next((path for path in paths if path.exists()), None)

    def _record_rollback(self, result: ReleaseResult, cause_run_id: str | None, flow_run_id: str | None) -> str:
        return self.tracker.record_rollback(
            result.model_name, from_version=result.from_version, to_version=result.to_version,
            moved=result.versions, reason=result.reason or DEFAULT_ROLLBACK_REASON, cause_run_id=cause_run_id,
            flow_run_id=flow_run_id, champion=result.champion_registry_version)

    # ------------------------------------------------------------------ helpers

    def _production(self, name: str) -> tuple[int | None, list[int]]:
        """What production serves and holds now (checks the name; an unknown model is refused by the store)."""
        production = self.store.versions(name, "production")
        return (production[-1] if production else None), production

    def _uri(self) -> str:
        from servegate.settings import default_tracking_uri

        return self._tracking_uri or default_tracking_uri()

    def _check_tracking(self) -> None:
        """An unreachable tracking server is refused before the store changes (no MLflow import needed)."""
        from servegate.tracking.stores import check_tracking_server

        check_tracking_server(self._uri())


def _shown(version: int | None) -> str:
    return "nothing" if version is None else f"version {version}"
