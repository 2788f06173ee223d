"""The fleet as the heartbeats of ``servegate sync`` show it: which nodes are live, what each serves, and
the deploy's wait until every live node serves the promoted version."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from servegate.object_store.location import S3Location
from servegate.object_store.sync import read_heartbeats

#: A node whose last heartbeat is older than this is not live (it is not waited for).
LIVE_S = 30.0


@dataclass
class NodeView:
    node: str
    serving: int | None        # highest AVAILABLE version (present, when the node knows no server)
    wanted: int | None
    lag_s: float
    last_seen_s: float         # seconds since its heartbeat
    live: bool
    last_error: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def fleet(client: Any, location: S3Location, name: str, *, now: float | None = None,
          live_s: float = LIVE_S) -> list[NodeView]:
    """Every node that reported ``name``, by node id."""
    now = time.time() if now is None else now
    views = []
    for beat in read_heartbeats(client, location):
        report = beat.get("models", {}).get(name)
        if report is None:
            continue
        shown = report["available"] if report.get("available") is not None else report.get("present", [])
        age = round(max(0.0, now - float(beat.get("time", 0))), 1)
        views.append(NodeView(str(beat.get("node")), max(shown) if shown else None, report.get("wanted"),
                              float(report.get("lag_s", 0.0)), age, age <= live_s, report.get("last_error")))
    return sorted(views, key=lambda view: view.node)


def wait_for_fleet(client: Any, location: S3Location, name: str, version: int, deadline_s: float,
                   *, poll_s: float = 0.5, live_s: float = LIVE_S) -> list[str]:
    """Wait until every live node serves ``version`` (or a newer one); returns their ids. Raises
    :class:`~servegate.deploy.verdict.ProductionVerificationError` naming the nodes that did not."""
    from servegate.deploy.verdict import ProductionVerificationError

    started = time.monotonic()
    while True:
        nodes = [view for view in fleet(client, location, name, live_s=live_s) if view.live]
        behind = [view for view in nodes if view.serving is None or view.serving < version]
        if not behind:
            return [view.node for view in nodes]
        if time.monotonic() - started > deadline_s:
            named = "; ".join(f"node {view.node} serves {view.serving} (lag {view.lag_s:.0f} s"
                              + (f", last error: {view.last_error}" if view.last_error else "") + ")"
                              for view in behind)
            raise ProductionVerificationError(
                f"{location.uri}: version {version} of {name!r} was not served by every live node within "
                f"{deadline_s:.0f} s: {named}")
        time.sleep(poll_s)
