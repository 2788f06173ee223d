"""A running Prefect server and MLflow tracking server, as a team runs them, for ``bench_deploy``.

Users who look at their runs in the Prefect UI and the MLflow UI run both as
services (docs/scaling.md): ``prefect server start`` and ``mlflow server``
with a SQLite backend. A deploy then points at them (``PREFECT_API_URL``,
``MLFLOW_TRACKING_URI=http://...``) and starts neither a local Prefect server
nor an MLflow SQLite store of its own. Both are started here before any
timing, and their CPU is not counted: they are not the deploy's processes.
Their logs are checked for tracebacks when they stop.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MLFLOW_START_S = 240


class RunningServices:
    """``prefect server start`` and ``mlflow server`` in ``home``; :meth:`env` points a deploy at them."""

    def __init__(self, home: Path):
        sys.path.insert(0, str(REPO_ROOT))
        from tests.support.ports import free_port
        from tests.support.prefect_stack import PrefectStack

        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.prefect = PrefectStack(home=home)
        self.mlflow_port = free_port()
        self.mlflow_log = home / "mlflow-server.log"
        self.mlflow: subprocess.Popen | None = None
        try:
            self.prefect.start_server()
            self._start_mlflow()
        except BaseException:
            self.close()  # a server already started is not left running
            raise

    def _start_mlflow(self) -> None:
        from tests.support.prefect_stack import wait_http

        data = self.home / "mlflow"
        data.mkdir(exist_ok=True)
        # docs/scaling.md's command line
        self.mlflow = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.mlflow_port), "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
             "--artifacts-destination", str(data / "artifacts"), "--serve-artifacts", "--workers", "2"],
            env={**self.prefect.env, "MLFLOW_DISABLE_TELEMETRY": "true"}, cwd=self.home, stdin=subprocess.DEVNULL,
            stdout=self.mlflow_log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{self.tracking_uri}/health", self.mlflow, self.mlflow_log, MLFLOW_START_S)

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def env(self) -> dict[str, str]:
        """What a deploy sets to use both services."""
        return {"PREFECT_API_URL": self.prefect.api, "MLFLOW_TRACKING_URI": self.tracking_uri}

    def close(self) -> None:
        from tests.support.prefect_stack import stop

        if self.mlflow is not None:
            stop(self.mlflow)
        self.prefect.close()
        for log in (self.mlflow_log, self.prefect.server_log):
            if log.is_file() and "Traceback (most recent call last)" in log.read_text(errors="replace"):
                raise RuntimeError(f"a traceback in {log}:\n{log.read_text(errors='replace')[-3000:]}")
