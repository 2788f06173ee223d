"""``servegate serve --store s3://...``: the bundled server on a local directory that ``servegate sync``'s
own pass keeps in step with production, in a thread of the same process.

The same guarantees as a TF Serving replica with its ``servegate sync`` sidecar: a version appears in the
directory only whole and verified (:func:`~servegate.object_store.download.download_version`), an old
version stays until the new one is AVAILABLE on this server's REST port, and the node reports itself in
a heartbeat (the deploy's "verify production" waits for it; ``servegate status`` lists it). The
directory is the server's own temporary one: the first pass fills it before the server starts, and it is
removed when the server stops, as is the node's heartbeat (nothing of it is left to protect).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

from servegate.errors import ConfigError
from servegate.object_store.location import S3Location
from servegate.object_store.sync import SyncTarget, heartbeat_key, write_heartbeat
from servegate.object_store.sync_loop import SyncOptions, one_pass


def default_node_id(port: int) -> str:
    """Unique per host and port: two servers on one machine are two nodes."""
    return f"{socket.gethostname()}-serve-{port}"


def serving_url(host: str, port: int) -> str | None:
    """Where this process's own server answers REST (None: REST off, so old versions go at once)."""
    if port == 0:
        return None
    reach = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"


class ServedFromBucket:
    """The sync's pass for one model, every ``interval_s``, until :meth:`stop`."""

    def __init__(self, location: S3Location, name: str, base_path: Path, node: str, url: str | None,
                 interval_s: float, say: Callable[[str], None]) -> None:
        from servegate.object_store import ObjectModelStore

        self.store = ObjectModelStore.open(location)  # every up-front check of the bucket
        self.options = SyncOptions(location, [SyncTarget(name, base_path)], node, url, interval_s)
        self.say = say
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_line = ""

    @property
    def name(self) -> str:
        return self.options.targets[0].name

    def first_pass(self) -> int:
        """Place the version production serves before the server starts; refused (exit 2) when it serves
        nothing, as ``servegate serve`` refuses a store without a production base path."""
        report = self._pass(SyncOptions(self.options.location, self.options.targets, self.options.node))
        location = self.options.location
        if report.wanted is None:
            raise ConfigError(f"{location.source} {location.uri}: production of model {self.name!r} serves nothing: "
                              f"promote a version first (servegate deploy --store {location.uri})",
                              subject=location.uri)
        if report.last_error:
            raise ConfigError(f"{location.source} {location.uri}: version {report.wanted} of {self.name!r} could not "
                              f"be placed: {report.last_error}", subject=location.uri)
        return report.wanted

    def _pass(self, options: SyncOptions):
        reports = one_pass(self.store.client, options)
        try:
            write_heartbeat(self.store.client, options.location, options.node, reports)
        except Exception as exc:  # noqa: BLE001 - the server keeps serving; the next pass tries again
            self.say(f"sync: heartbeat not written: {exc}")
        report = reports[self.name]
        line = (f"sync: {self.name}: production {report.wanted}, present {report.present}, available "
                f"{report.available}" + (f", error: {report.last_error}" if report.last_error else ""))
        if line != self._last_line:  # a line per change, not per pass
            self.say(line)
            self._last_line = line
        return report

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.options.interval_s):
                try:
                    self._pass(self.options)
                except Exception as exc:  # noqa: BLE001 - a failed pass is reported; the server keeps serving
                    self.say(f"sync: {self.name}: pass failed: {type(exc).__name__}: {exc}")

        self._thread = threading.Thread(target=loop, name="servegate-serve-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the passes, then remove this node's heartbeat: its directory goes with the server."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.store.client.delete_object(Bucket=self.options.location.bucket,
                                            Key=heartbeat_key(self.options.location, self.options.node))
        except Exception as exc:  # noqa: BLE001 - a heartbeat left behind only ages
            self.say(f"sync: heartbeat of {self.options.node} not removed: {exc}")
