"""The ``process`` runner: a model server as a local child process with TensorFlow Serving's flags.

The server is ``tensorflow_model_server`` when it is on PATH, otherwise the
bundled server (``python -m servegate.serving``). Life cycle (see base.py):

- ``start()`` reaps leftovers of killed runs, makes a private work dir
  (``servegate-canary-<model>-*`` in the temp dir) holding the canary base path
  (symlinks to the spec's versions), the generated model config and
  ``server.log``; picks two free loopback ports (bind to port 0, release);
  starts the server in its own session/process group with stdout+stderr going
  to ``server.log``; writes a pid file naming the owner (this process) and the
  server, so that :func:`~servegate.serving.runners.reap.reap` can end a canary
  whose owner was SIGKILLed.
- When this process holds a prewarmed bundled server for the model
  (:mod:`servegate.serving.runners.spare`, started by a deploy before the
  candidate existed) and the runner would start the bundled server with this
  process's environment, the first launch hands that server its flags
  instead of starting a new one (its TensorFlow import is already done); it
  runs the same code with the same flags, log, work dir, pid file and
  process group. A relaunch (ports taken) starts cold.
- If the server dies because a picked port was taken in between (a race with
  another process), ``wait_until_available`` restarts it on new ports, a few
  times; with ports given explicitly it raises :class:`PortInUseError`.
- ``stop()`` sends SIGTERM to the whole process group, SIGKILL after a grace
  period, then removes the pid file and the work dir (keeping the log text in
  memory, so ``logs()`` still answers).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from servegate.errors import ServingError
from servegate.ports import pick_free_ports, port_is_free
from servegate.runtime import identity as _proc
from servegate.serving.runners import spare
from servegate.serving import TFS_BINARY
from servegate.serving.runners.base import CanarySpec, ModelServerRunner, build_canary_base_path, model_config_text
from servegate.serving.runners.errors import PortInUseError, with_log_tail
from servegate.serving.runners.state import process_state_dir

# What servers print when a listening port is taken: uvicorn/asyncio, grpc, TF Serving.
_PORT_IN_USE = re.compile(r"address already in use|errno 98|failed to add port|failed to bind|"
                          r"could not bind|port .* in use", re.IGNORECASE)
STOP_GRACE_S = 5.0


def default_server_command(server: str = "auto") -> list[str]:
    """The command before the flags: ``auto`` (TF Serving if on PATH, else bundled), ``tfs`` or ``bundled``."""
    if server not in ("auto", "tfs", "bundled"):
        raise ServingError(f"process runner: server {server!r} is unknown: expected 'auto', 'tfs' or 'bundled'")
    binary = shutil.which(TFS_BINARY)
    if server == "tfs" or (server == "auto" and binary):
        if not binary:
            raise ServingError(f"process runner: {TFS_BINARY} is not on PATH (PATH={os.environ.get('PATH', '')})")
        return [binary]
    return [sys.executable, "-m", "servegate.serving"]


class ProcessRunner(ModelServerRunner):
    """A canary model server as a child process group; see the module docstring."""

    kind = "process"

    def __init__(self, spec: CanarySpec, *, server: str = "auto", server_command: Sequence[str] | None = None,
                 rest_port: int | None = None, grpc_port: int | None = None, extra_args: Sequence[str] = (),
                 env: dict[str, str] | None = None, state_dir: Path | None = None, port_attempts: int = 5,
                 reap_first: bool = True, load_retries: int | None = 0,
                 port_picker: Callable[[int], list[int]] = pick_free_ports) -> None:
        super().__init__(spec)
        self.server_command = list(server_command) if server_command else default_server_command(server)
        self._fixed_ports = (rest_port, grpc_port) if rest_port or grpc_port else None
        if self._fixed_ports and not (rest_port and grpc_port):
            raise ServingError("process runner: give both rest_port and grpc_port, or neither")
        # A canary should fail fast: TF Serving's default retries a failed load 5 times, a minute apart.
        retries = [f"--max_num_load_retries={load_retries}"] if load_retries is not None else []
        self.extra_args = retries + list(extra_args)
        self.env = env
        self.state_dir = Path(state_dir) if state_dir else process_state_dir()
        self.port_attempts = port_attempts
        self.reap_first = reap_first
        self._port_picker = port_picker
        self._proc: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._pid_file: Path | None = None
        self._ports: tuple[int, int] | None = None
        self._attempts = 0
        self._started = False
        self._final_log: str | None = None
        self._group_ended = False
        self._spare = None  # a prewarmed bundled server (runners/spare.py) for the first launch

    def __repr__(self) -> str:
        pid = self._proc.pid if self._proc else None
        return f"ProcessRunner(model={self.spec.model_name!r}, pid={pid}, ports={self._ports})"

    # -- endpoints -------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def workdir(self) -> Path | None:
        return self._workdir

    def _require_ports(self) -> tuple[int, int]:
        if self._ports is None:
            raise ServingError(f"{self!r}: no endpoint before start()")
        return self._ports

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            raise ServingError(f"{self!r}: start() was already called; make a new runner for a new server")
        self._started = True
        self._track()
        if self.reap_first:
            from servegate.serving.runners.reap import reap_processes
            reap_processes(state_dir=self.state_dir)
        if self.env is None and self.server_command == spare.bundled_command():
            self._spare = spare.take(self.spec.model_name)
        if self._spare is not None:
            self._workdir = self._spare.workdir  # named on the spare's command line since it started
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"servegate-canary-{self.spec.model_name}-"))
        model_dir = build_canary_base_path(self.spec, self._workdir / "models")
        self._model_args = [f"--model_name={self.spec.model_name}", f"--model_base_path={model_dir}"]
        if self.spec.needs_config_file:
            config = self._workdir / "models.config"
            config.write_text(model_config_text(self.spec, str(model_dir)))
            self._model_args = [f"--model_config_file={config}"]
        if self._fixed_ports:
            taken = [p for p in self._fixed_ports if not port_is_free(p)]
            if taken:
                raise PortInUseError(
                    f"process runner for {self.spec.model_name!r}: port(s) {taken} on 127.0.0.1 already in use; "
                    "free them or let the runner pick free ports")
            self._launch(self._fixed_ports)
        else:
            self._launch(self._pick_ports())

    def _pick_ports(self) -> tuple[int, int]:
        for _ in range(self.port_attempts):
            rest, grpc = self._port_picker(2)
            if port_is_free(rest) and port_is_free(grpc):
                return rest, grpc
        raise PortInUseError(f"process runner for {self.spec.model_name!r}: found no two free loopback ports "
                             f"in {self.port_attempts} tries")

    def _launch(self, ports: tuple[int, int]) -> None:
        assert self._workdir is not None
        self._attempts += 1
        self._ports = ports
        self._group_ended = False
        rest, grpc = ports
        command = [*self.server_command, f"--port={grpc}", f"--rest_api_port={rest}", *self._model_args,
                   *self.extra_args]
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_path = self._workdir / "server.log"
        held, self._spare = self._spare, None  # only the first launch; a relaunch starts cold
        with open(log_path, "ab") as log:
            log.write(f"$ {' '.join(command)}{'  (prewarmed)' if held else ''}\n".encode())
            log.flush()
            self._proc = self._hand_flags_to(held, command, log_path) if held else None
            if self._proc is None:
                self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, env=env, cwd=self._workdir,
                                              start_new_session=True)
        self._write_pid_file()

    def _hand_flags_to(self, held, command: list[str], log_path: Path) -> subprocess.Popen | None:
        """Give a prewarmed server its flags (the command after ``python -m servegate.serving``);
        None when it died meanwhile (the caller starts the server cold)."""
        request = json.dumps({"argv": command[len(spare.bundled_command()):], "log": str(log_path)})
        try:
            held.process.stdin.write(request.encode() + b"\n")
            held.process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            held.process.kill()
            held.process.wait()
            return None
        return held.process

    def _write_pid_file(self) -> None:
        assert self._proc is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "owner_pid": os.getpid(), "owner_ticks": _proc.start_ticks(os.getpid()),
            "server_pid": self._proc.pid, "server_ticks": _proc.start_ticks(self._proc.pid),
            "pgid": self._proc.pid, "model": self.spec.model_name, "versions": list(self.spec.versions),
            "run_id": self.spec.run_id, "workdir": str(self._workdir), "started": time.time(),
        }
        path = self.state_dir / f"{self._proc.pid}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)  # a reader sees the whole record or none
        if self._pid_file and self._pid_file != path:
            self._pid_file.unlink(missing_ok=True)
        self._pid_file = path

    def _exit_status(self) -> str | None:
        if self._proc is None:
            return "was never started"
        code = self._proc.poll()
        return None if code is None else f"exited with code {code}"

    def _retry_after_exit(self, exit_status: str) -> bool:
        if not _PORT_IN_USE.search(self.logs(tail=40)):
            return False
        if self._fixed_ports:
            raise PortInUseError(with_log_tail(
                f"process runner for {self.spec.model_name!r}: port {self._fixed_ports} on 127.0.0.1 "
                f"is in use (server {exit_status})", self.logs(tail=20)))
        if self._attempts >= self.port_attempts:
            raise PortInUseError(with_log_tail(
                f"process runner for {self.spec.model_name!r}: ports were taken {self._attempts} times in a row "
                f"(last {self._ports})", self.logs(tail=20)))
        self._kill_group()
        self._launch(self._pick_ports())
        return True

    def logs(self, tail: int = 200) -> str:
        if self._workdir is not None and (self._workdir / "server.log").is_file():
            with open(self._workdir / "server.log", encoding="utf-8", errors="replace") as fh:
                return "".join(collections.deque(fh, maxlen=tail))
        if self._final_log is not None:
            return "".join(self._final_log.splitlines(keepends=True)[-tail:])
        return ""

    def _kill_group(self) -> None:
        """SIGTERM the server's process group, SIGKILL after the grace period; reap the leader."""
        proc = self._proc
        if proc is None or self._group_ended:
            return
        pgid = proc.pid  # start_new_session=True: the server leads its own group
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        # Kill whatever is left in the group (the leader if it ignored SIGTERM, or its children).
        if _proc.group_exists(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        # Once the leader is reaped its pid may be recycled: never signal that group again.
        self._group_ended = True

    def stop(self) -> None:
        self._untrack()
        try:
            if self._spare is not None:  # taken, but start() failed before the launch
                held, self._spare = self._spare, None
                held.process.kill()
                held.process.wait()
            self._kill_group()
        finally:
            if self._pid_file is not None:
                self._pid_file.unlink(missing_ok=True)
                self._pid_file = None
            if self._workdir is not None:
                self._final_log = self.logs(tail=10_000)
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
