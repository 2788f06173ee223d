"""Mode 2 of docs/scaling.md for real: the store in a bucket, no shared disk anywhere.

- a SeaweedFS (``weed mini``) on loopback holds the store (``s3://BUCKET/store``) and MLflow's artifacts
  (``mlflow server --artifacts-destination s3://BUCKET/mlflow``);
- the Prefect server runs on a throwaway PostgreSQL cluster (tests/support/postgres.py);
- Prefect process workers run in containers from the project's image with **no volume**: the model
  files a deploy names are copied into each container (``docker cp``), as a job would bake them in;
- each serving node is a bundled model server on the host reading its own local directory, kept in
  step by its own ``servegate sync``.

Every part is configured the standard way (``AWS_*`` variables, ``PREFECT_API_URL``,
``MLFLOW_TRACKING_URI``, ``SERVEGATE_STORE``) and logs to a file the test searches for tracebacks.
Containers use the host's network (they reach every server on 127.0.0.1), not its pid namespace: each
worker is a host of its own, as on Kubernetes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.object_store.seaweed import Seaweed
from tests.support.cli import VENV_BIN
from tests.support.ports import free_port
from tests.support.postgres import Postgres
from tests.support.prefect_stack import PrefectStack, wait_http
from tests.support.scale_stack import IMAGE, LABEL, POOL, ContainerStack, docker

BUCKET = "servegate"


@dataclass
class PostgresPrefect(PrefectStack):
    """``prefect server start`` with ``PREFECT_API_DATABASE_CONNECTION_URL`` naming a PostgreSQL database."""

    database_url: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url}


@dataclass
class Node:
    """One serving node: a bundled model server on ``base`` and the ``servegate sync`` that fills it."""

    name: str
    base: Path
    rest_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def base_path(self, model: str) -> Path:
        return self.base / model


@dataclass
class FleetStack(ContainerStack):
    root: Path
    seaweed: Seaweed
    postgres: Postgres
    mlflow_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.created = time.monotonic()
        self.logs = self.root / "logs"
        for d in (self.logs, self.root / "home"):
            d.mkdir(parents=True, exist_ok=True)
        self.prefect = PostgresPrefect(home=self.root / "home", logs=self.logs, database_url=self.postgres.url)

    @property
    def store_uri(self) -> str:
        return f"s3://{BUCKET}/store"

    @property
    def api_url(self) -> str:
        return self.prefect.api

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def host_env(self) -> dict[str, str]:
        return {**self.prefect.env, **self.seaweed.env(), "MLFLOW_TRACKING_URI": self.tracking_uri,
                "SERVEGATE_STORE": self.store_uri}

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(args, env=self.host_env(), cwd=self.root, stdin=subprocess.DEVNULL,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    # ------------------------------------------------------------------ servers
    def start_servers(self) -> None:
        """MLflow and Prefect, started side by side. MLflow's runs in SQLite on this host, its artifacts
        in the bucket, served through the server (workers upload over HTTP: no bucket settings of
        MLflow's in the workers); the server reads the bucket's endpoint and keys from ``AWS_*``."""
        data = self.root / "mlflow"
        data.mkdir(exist_ok=True)
        proc = self.spawn("mlflow-server", [
            str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.mlflow_port),
            "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts", "--workers", "2"])
        self.prefect.start_server()
        wait_http(f"{self.tracking_uri}/health", proc, self.logs / "mlflow-server.log", 240)

    def start_worker(self, name: str, inputs: Path, limit: int = 2) -> str:
        """``prefect worker start --pool POOL --type process`` in a container from the image: no volume;
        ``inputs`` (a directory directly under /tmp, readable by all) copied in at the same path before
        it starts."""
        env = {"PREFECT_API_URL": self.api_url, "MLFLOW_TRACKING_URI": self.tracking_uri,
               "SERVEGATE_STORE": self.store_uri, "PREFECT_LOGGING_LEVEL": "INFO", **self.seaweed.env()}
        docker("rm", "-f", name, check=False)
        docker("create", "--name", name, "--label", LABEL, "--network", "host",
               *[arg for key, value in env.items() for arg in ("-e", f"{key}={value}")],
               IMAGE, "prefect", "worker", "start", "--pool", POOL, "--type", "process", "--name", name,
               "--limit", str(limit))
        self.containers.append(name)
        docker("cp", f"{inputs}/.", f"{name}:{inputs}")
        docker("start", name)
        return name

    def start_node(self, node: Node, models: tuple[str, ...], interval_s: float = 0.3) -> None:
        """The node's bundled server (``python -m servegate.serving`` polling its directory, as TF Serving
        would) and its sync (``servegate sync``, one ``--name``/``--base-path`` per model)."""
        entries = "".join(f'  config {{ name: "{m}" base_path: "{node.base_path(m)}" '
                          'model_platform: "tensorflow" }\n' for m in models)
        self.nodes.append(node)
        for model in models:  # an empty directory (a pod's emptyDir): the server starts, the sync fills it
            node.base_path(model).mkdir(parents=True, exist_ok=True)
        config = node.base / "models.config"
        config.write_text(f"model_config_list {{\n{entries}}}\n")
        self.spawn(f"{node.name}-server", [
            sys.executable, "-m", "servegate.serving", f"--port={free_port()}", f"--rest_api_port={node.rest_port}",
            f"--model_config_file={config}", "--file_system_poll_wait_seconds=0.2"])
        targets = [arg for m in models for arg in ("--name", m, "--base-path", str(node.base_path(m)))]
        self.spawn(f"{node.name}-sync", [
            sys.executable, "-m", "servegate", "sync", "--store", self.store_uri, *targets, "--node-id", node.name,
            "--interval", str(interval_s), "--serving-url", node.url])

    def check_running(self, names: list[str]) -> None:
        super().check_running(names)
        for proc in self.procs:
            assert proc.poll() is None, f"{' '.join(map(str, proc.args[:5]))} exited {proc.returncode}"
