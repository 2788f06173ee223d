"""The reliability harness: run ``servegate deploy`` as CI does, kill it, and check what it left.

Life cycle of one scenario:

1. :class:`Workspace` is one isolated servegate installation: its own
   ``SERVEGATE_HOME``, store, MLflow SQLite file and ``TMPDIR``, pointed at a
   shared Prefect API. Every deploy of a scenario runs in it.
2. :meth:`Workspace.start_deploy` launches ``servegate deploy --json`` in a new
   session (its own process group), optionally with a kill trigger
   (``kill_at``: a named step, see ``_deploy_child``) or killed from outside
   after ``kill_after_s`` seconds (a random moment). :meth:`DeployProcess.wait`
   returns a :class:`DeployResult`; its ``kill_point`` names the trigger, or
   for a kill from outside its moment and the last step or store checkpoint
   the deploy had reached (its trace), so that a failure names its window.
3. :func:`check_production` right after a kill: production holds only complete
   versions and serves the version it served before or the fully promoted new
   one. :func:`check_clean` after the next deploy that ran to its end: no temp
   entries in the store, no held lock, no canary process, pid file or
   container, no MLflow run left RUNNING, every version number used once.

Everything a scenario starts is stopped by :meth:`Workspace.close` (the
fixtures call it), also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.model_store.treeutil import snapshot_tree

DEPLOY_TIMEOUT_S = 240.0


@dataclass
class DeployResult:
    """How one ``servegate deploy`` ended. ``killed``: by SIGKILL (a trigger or the harness)."""

    returncode: int
    stdout: str
    stderr: str
    killed: bool
    kill_point: str | None
    outcome: dict | None
    last_reached: str | None = None  # the trace's last step or store checkpoint, and when


    @property
    def version(self) -> int | None:
        return self.outcome.get("version") if self.outcome else None

    def describe(self) -> str:
        return f"exit {self.returncode} (killed at {self.kill_point})\nstdout:\n{self.stdout[-2000:]}\nstderr:\n{self.stderr[-4000:]}"


@dataclass
class DeployProcess:
    proc: subprocess.Popen
    out_path: Path
    err_path: Path
    kill_log: Path
    kill_after_s: float | None = None
    trace: Path | None = None
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)

    def last_reached(self) -> str:
        """The last line of the deploy's trace: ``<step or store:checkpoint> at <s> s`` after its start."""
        lines = self.trace.read_text().split("\n") if self.trace and self.trace.exists() else []
        lines = [line for line in lines if " " in line]
        if not lines:
            return "no step yet (the command was still starting)"
        when, what = lines[-1].split(" ", 1)
        return f"{what} at {float(when) - self.started_wall:.2f} s"

    def kill(self) -> None:
        """SIGKILL the deploy's whole process group (a CI job cancelled hard)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = DEPLOY_TIMEOUT_S) -> DeployResult:
        deadline = self.started + timeout
        killed_from_outside = False
        while self.proc.poll() is None:
            now = time.monotonic()
            if self.kill_after_s is not None and not killed_from_outside and now - self.started >= self.kill_after_s:
                self.kill()
                killed_from_outside = True
            if now > deadline:
                self.kill()
                self.proc.wait(10)
                raise AssertionError(f"servegate deploy ran past {timeout} s:\n{self.err_path.read_text()[-4000:]}")
            time.sleep(0.02)
        stdout = self.out_path.read_text(errors="replace")
        stderr = self.err_path.read_text(errors="replace")
        points = self.kill_log.read_text().split() if self.kill_log.exists() else []
        killed = self.proc.returncode == -signal.SIGKILL
        last = self.last_reached()
        kill_point = points[-1] if points else (
            f"after {self.kill_after_s:.2f} s (last reached: {last})" if killed_from_outside else None)
        outcome = None
        if stdout.strip():
            try:
                outcome = json.loads(stdout)
            except ValueError:
                outcome = None
        return DeployResult(self.proc.returncode, stdout, stderr, killed, kill_point, outcome, last)


class Workspace:
    """One isolated servegate installation (home, store, MLflow, TMPDIR) on a shared Prefect API."""

    def __init__(self, root: Path, prefect_api_url: str, name: str = "rel") -> None:
        self.root = Path(root)
        self.name = name
        self.home = self.root / "home"
        self.store = self.home / "store"
        self.tmp = self.root / "tmp"
        self.logs = self.root / "logs"
        for d in (self.home, self.tmp, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = f"sqlite:///{self.home / 'mlflow.db'}"
        self.env = {
            **os.environ,
            "SERVEGATE_HOME": str(self.home),
            "SERVEGATE_STORE": str(self.store),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PREFECT_API_URL": prefect_api_url,
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TMPDIR": str(self.tmp),
            "PYTHONUNBUFFERED": "1",
        }
        self._runs = 0
        self._procs: list[DeployProcess] = []
        self.servers: list = []

    # ---------------------------------------------------------------- running deploys

    def command(self, *args: str, child: bool = False) -> list[str]:
        module = "tests.reliability._deploy_child" if child else "servegate"
        return [sys.executable, "-m", module, *args]

    def start_deploy(self, model: Path, name: str, reference: Path, *, serving: str = "process",
                     docker_image: str | None = None, production_url: str | None = None,
                     config: Path | None = None, kill_at: str | None = None, kill_after_s: float | None = None,
                     kill_delay_s: float | None = None, crash_canary: bool = False,
                     hang_canary: bool = False, extra_args: tuple[str, ...] = (), env: dict | None = None,
                     force_new_version: bool = True) -> DeployProcess:
        # The proofs deploy one model file again and again to reach each window; a re-run of the file
        # production serves would answer "unchanged" and create nothing, so they force a new version.
        self._runs += 1
        n = self._runs
        args = ["deploy", "--model", str(model), "--name", name, "--reference", str(reference),
                "--serving", serving, "--json", *(["--force-new-version"] if force_new_version else []),
                *extra_args]
        if docker_image:
            args += ["--docker-image", docker_image]
        if production_url:
            args += ["--production-url", production_url]
        if config:
            args += ["--config", str(config)]
        run_env = dict(env or self.env)
        kill_log = self.logs / f"deploy-{n}.killed"
        trace = self.logs / f"deploy-{n}.trace"
        child = bool(kill_at or crash_canary or hang_canary or kill_after_s is not None)
        if kill_at:
            run_env["SERVEGATE_TEST_KILL_AT"] = kill_at
        if kill_delay_s is not None:
            run_env["SERVEGATE_TEST_KILL_DELAY"] = str(kill_delay_s)
        if crash_canary:
            run_env["SERVEGATE_TEST_CRASH_CANARY"] = "1"
        if hang_canary:
            run_env["SERVEGATE_TEST_HANG_CANARY"] = "1"
        run_env["SERVEGATE_TEST_KILL_LOG"] = str(kill_log)
        run_env["SERVEGATE_TEST_TRACE"] = str(trace)
        out_path, err_path = self.logs / f"deploy-{n}.out", self.logs / f"deploy-{n}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(self.command(*args, child=child), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=run_env, start_new_session=True)
        process = DeployProcess(proc, out_path, err_path, kill_log, kill_after_s, trace)
        self._procs.append(process)
        return process

    def deploy(self, *args, timeout: float = DEPLOY_TIMEOUT_S, **kwargs) -> DeployResult:
        return self.start_deploy(*args, **kwargs).wait(timeout)

    def servegate(self, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), env=env or self.env, cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=timeout)

    def start_production_server(self, name: str, poll_s: float = 0.2, base_path: Path | None = None):
        """A bundled server on ``production/<name>`` (or ``base_path``; needs a version there), waited for."""
        from tests.serving.conftest import launch, wait_available

        base_path = base_path or self.store / "production" / name
        server = launch([f"--model_name={name}", f"--model_base_path={base_path}",
                         f"--file_system_poll_wait_seconds={poll_s}"],
                        self.logs / f"production-{name}-{len(self.servers)}.log", grpc=False)
        self.servers.append(server)
        wait_available(server, name)
        return server

    def close(self) -> None:
        """Stop every deploy and server this workspace started, and reap canaries they left."""
        for p in self._procs:
            if p.proc.poll() is None:
                p.kill()
                p.proc.wait(10)
        for server in self.servers:
            server.stop()
        from servegate.serving.runners.reap import reap_processes

        reap_processes(state_dir=self.home / "run" / "canary-processes", all_of_model=True)
        _reap_containers_of(self.home)

    # ---------------------------------------------------------------- looking at the result

    def model_store(self):
        from servegate.model_store import ModelStore

        return ModelStore(self.store)

    def production_snapshot(self, name: str) -> dict:
        return snapshot_tree(self.store / "production" / name)


def _reap_containers_of(home: Path) -> None:
    """Containers whose canary mounts this workspace's store (a test's leftovers)."""
    try:
        import docker

        client = docker.from_env()
        for c in client.containers.list(all=True, filters={"label": "servegate.managed=true"}):
            mounts = json.dumps(c.attrs.get("Mounts", []))
            if str(home) in mounts:
                c.remove(force=True)
    except Exception:
        pass


# ---------------------------------------------------------------- invariants


def complete_versions(base: Path) -> dict[int, Path]:
    """Numeric entries of ``base``; fails when one is not a complete SavedModel."""
    from servegate.model_store.savedmodel import check_savedmodel

    found = {}
    if not base.is_dir():
        return found
    for entry in base.iterdir():
        if entry.name.isdigit():
            check_savedmodel(entry)  # raises NotASavedModel for a half-written version
            found[int(entry.name)] = entry
    return found


def check_production(ws: Workspace, name: str, served_before: int | None, used_before: set[int],
                     unchanged: bool = False) -> int | None:
    """After a kill: production holds only complete versions and serves ``served_before`` or a fully
    promoted new version (one whose number was never used before). ``unchanged``: the kill came before
    promotion could start, so production must serve ``served_before``. Returns what production serves.
    """
    versions = complete_versions(ws.store / "production" / name)
    serving = max(versions) if versions else None
    if unchanged:
        assert serving == served_before, f"production serves {serving}; the kill came before promotion"
    else:
        assert serving == served_before or (serving is not None and serving not in used_before), (
            f"production serves {serving}: neither what it served before ({served_before}) nor a new version")
    return serving


def served_versions(rest_url: str, name: str) -> list[int]:
    import requests

    response = requests.get(f"{rest_url}/v1/models/{name}", timeout=5)
    response.raise_for_status()
    return sorted(int(s["version"]) for s in response.json()["model_version_status"] if s["state"] == "AVAILABLE")


def canary_pid_files(ws: Workspace) -> list[Path]:
    d = ws.home / "run" / "canary-processes"
    return sorted(d.glob("*.json")) if d.is_dir() else []


def live_processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Processes whose command line contains ``text`` (a workspace path: its canaries)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def canary_containers(ws: Workspace) -> list[str]:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception:
        return []
    names = []
    for c in client.containers.list(all=True, filters={"label": "servegate.managed=true"}):
        if str(ws.home) in json.dumps(c.attrs.get("Mounts", [])):
            names.append(c.name)
    return names


def running_mlflow_runs(ws: Workspace, name: str) -> list[str]:
    from servegate.tracking import Tracker

    tracker = Tracker(ws.tracking_uri)
    exp = tracker.client.get_experiment_by_name(f"servegate/{name}")
    if exp is None:
        return []
    runs = tracker.client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")
    return [r.info.run_id for r in runs]


def all_versions(ws: Workspace, name: str) -> dict[str, list[int]]:
    status = ws.model_store().status(name)
    return {area: list(vs) for area, vs in status.versions.items()}


def check_clean(ws: Workspace, name: str) -> None:
    """After a deploy that ran to its end: nothing left behind by any earlier killed attempt."""
    from servegate.model_store.layout import TMP_PREFIX
    from servegate.model_store.locking import lock_is_held

    store = ws.model_store()
    status = store.status(name)
    assert not status.leftovers, f"store leftovers: {status.leftovers}"
    for area in ("staging", "production", "rejected"):
        base = ws.store / area / name
        if base.is_dir():
            dots = [e.name for e in base.iterdir() if e.name.startswith(TMP_PREFIX)]
            assert not dots, f"temp entries in {base}: {dots}"
    assert not status.staging, f"versions left in staging: {status.staging}"
    assert not lock_is_held(ws.store / ".servegate" / name / "lock"), "the model lock is still held"
    assert status.lock_holder is None, f"stale lock holder: {status.lock_holder}"
    assert not canary_pid_files(ws), f"canary pid files left: {canary_pid_files(ws)}"
    assert not live_processes_mentioning(str(ws.tmp) + "/servegate-canary"), "canary processes left"
    assert not canary_containers(ws), f"canary containers left: {canary_containers(ws)}"
    assert not running_mlflow_runs(ws, name), f"MLflow runs left RUNNING: {running_mlflow_runs(ws, name)}"
    versions = [v for vs in status.versions.values() for v in vs]
    assert len(versions) == len(set(versions)), f"a version number is in two areas: {status.versions}"
    complete_versions(ws.store / "production" / name)


def leftover_work_dirs(ws: Workspace, name: str) -> list[str]:
    """The pipeline's per-attempt work dirs (``$TMPDIR/servegate-<name>-*``) still on disk."""
    return sorted(p.name for p in ws.tmp.glob(f"servegate-{name}-*"))


def assert_promotions_serialised(records) -> None:
    """The store's history shows promotions one after another, in version order (never backwards)."""
    promotes = sorted((r for r in records if r.operation == "promote"), key=lambda r: r.started or r.time)
    for earlier, later in zip(promotes, promotes[1:]):
        assert later.started >= earlier.time, f"promotions overlap: {earlier} and {later}"
    versions = [r.version for r in promotes]
    assert versions == sorted(versions), f"production went backwards: promotions in order {versions}"
