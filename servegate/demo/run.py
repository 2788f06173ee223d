"""``servegate demo``: the whole story on the embedded default, in about a minute.

1. train the demo model's three variants (the ``train-demo-model`` flow);
2. deploy the baseline: version 1 is promoted;
3. start a production bundled server on the store's production base path,
   recording its traffic (``logging_config``), and let production clients
   send it every row of the data (:mod:`servegate.demo.traffic`);
4. deploy a deliberately broken model: rejected, production still serves 1;
5. deploy an improved model while a client thread queries production
   continuously: promoted, the production server swaps to it, no request fails.
   Steps 4 and 5 are also judged on production's recorded traffic (the shadow
   check), and their shadow figures are printed;
6. print a summary and the commands that open the Prefect UI and the MLflow UI
   on these runs.

Everything lives under one work dir (store, models, MLflow SQLite database),
kept afterwards so that the UIs can show it. The production server and the
client thread are stopped on every path. Prefect runs on a server of the demo's
own, with its database in ``<work dir>/prefect``, whatever ``PREFECT_API_URL``
says (:mod:`servegate.demo.isolation`): the demo's runs and events never reach
the user's Prefect, where a trigger could deploy its models into production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from servegate.demo.isolation import DemoPrefect, own_prefect
from servegate.demo.traffic import (SHADOW_CONFIG, ProductionTraffic, TrafficStats, model_config_text,
                                    production_rows, send_production_burst, wait_recorded)
from servegate.errors import ServingError

MODEL_NAME = "diabetes"


class ProductionServer:
    """The bundled server watching the production base path and recording every request under
    ``traffic_prefix``. Always the bundled server, even where tensorflow_model_server is on PATH: stock
    TF Serving refuses to start with a ``logging_config`` (it ships no log collector)."""

    def __init__(self, base_path: Path, log_path: Path, traffic_prefix: Path, poll_s: int = 1) -> None:
        from servegate.ports import pick_free_ports
        from servegate.serving.runners.process import default_server_command
        from servegate.serving.server.monitoring_config import DEFAULT_PROMETHEUS_PATH, write_prometheus_config

        self.rest_port, self.grpc_port = pick_free_ports(2)
        self.traffic_pattern = f"{traffic_prefix}-*.tfrecord"
        config = log_path.parent / "production-models.config"
        config.write_text(model_config_text(MODEL_NAME, base_path, traffic_prefix))
        self.command = default_server_command("bundled") + [
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            f"--model_config_file={config}",
            f"--file_system_poll_wait_seconds={poll_s}",
            f"--monitoring_config_file={write_prometheus_config(log_path.parent / 'monitoring.config')}",
        ]
        self.metrics_url = f"http://127.0.0.1:{self.rest_port}{DEFAULT_PROMETHEUS_PATH}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def __enter__(self) -> "ProductionServer":
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log.close()

    def serving_version(self) -> int | None:
        from servegate.serving.model_state import serving_version

        return serving_version(self.rest_url, MODEL_NAME)

    def wait_for_version(self, version: int, deadline_s: float = 90.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServingError(
                    f"production server exited with {self.proc.returncode}; log: {self.log_path.read_text()[-2000:]}"
                )
            if self.serving_version() == version:
                return
            time.sleep(0.2)
        raise ServingError(f"production server at {self.rest_url} did not serve version {version} within {deadline_s:.0f} s")


@dataclass
class DemoSummary:
    work_dir: Path
    outcomes: list[dict]
    traffic: TrafficStats
    production_version: int | None
    tracking_uri: str
    seconds: float
    ok: bool


def _echo_links(echo: Callable[[str], None], tracking_uri: str, store_root: Path, prefect: DemoPrefect) -> None:
    """The commands that open the runs (full paths: they work without activating the venv)."""
    from servegate.tracking import Tracker

    bin_dir = Path(sys.executable).parent
    echo("open the runs:")
    echo(f"  Prefect UI:  {prefect.ui_command(bin_dir)}")
    runs_url = Tracker(tracking_uri).ui_url(MODEL_NAME)  # opens MLflow 3's model-training view of the runs
    echo(f"  MLflow UI:   {bin_dir / 'mlflow'} ui --backend-store-uri {tracking_uri} --port 5000   # then {runs_url}")
    echo(f"  store:       {bin_dir / 'servegate'} status --name {MODEL_NAME} --store {store_root}")


def _record_production(server: "ProductionServer", rows, echo: Callable[[str], None]) -> None:
    """Production's clients send every row once; the server records each request (step 3)."""
    began = time.perf_counter()
    sent = send_production_burst(MODEL_NAME, server.rest_url, server.grpc_target, rows)
    recorded = wait_recorded(server.traffic_pattern, sent)
    echo(f"    production clients sent {sent} requests (REST rows, REST columns, gRPC) in "
         f"{time.perf_counter() - began:.1f} s; recorded: {recorded} in {server.traffic_pattern}")


def echo_shadow(outcome: dict, echo: Callable[[str], None]) -> None:
    """The shadow check's figures of one deploy (or why it did not run)."""
    figures = {k.removeprefix("shadow."): v for k, v in outcome.get("figures", {}).items() if k.startswith("shadow.")}
    if figures:
        echo("    shadow check on recorded production traffic: "
             + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))
        return
    for gate in outcome.get("gates_not_run", []):
        if gate.get("check") == "shadow":
            echo(f"    shadow check not run: {gate.get('reason')}")


def _under_traffic(server: "ProductionServer", deploy: Callable[..., dict], echo: Callable[[str], None]):
    """Steps 4 and 5: a broken model rejected, an improved one promoted while a client queries production;
    both judged on production's recorded traffic too."""
    judged_on_traffic = {"production_url": server.rest_url, "traffic": server.traffic_pattern,
                         "config": str(server.log_path.parent / "shadow.yaml")}
    (server.log_path.parent / "shadow.yaml").write_text(SHADOW_CONFIG)
    echo("4/5 deploying a deliberately broken model (its output bias wiped)")
    broken = deploy("broken", **judged_on_traffic)
    echo_shadow(broken, echo)
    echo(f"    production server still serves version {server.serving_version()}")

    echo("5/5 deploying the improved model while a client queries production continuously")
    with ProductionTraffic(MODEL_NAME, server.grpc_target, production_rows()) as traffic:
        improved = deploy("improved", **judged_on_traffic)
        echo_shadow(improved, echo)
        time.sleep(1.0)  # let the client see the new version answer for a moment
    stats = traffic.stats
    echo(f"    production traffic: {stats.sent} requests, {stats.failed} failed, answers by version: "
         f"{dict(sorted(stats.versions_seen.items()))}")
    return broken, improved, stats, server.serving_version()


def run_demo(work_dir: Path | None = None, echo: Callable[[str], None] = print) -> DemoSummary:
    """Run the demo; see the module docstring. Returns what happened."""
    from servegate.settings import servegate_home

    started = time.perf_counter()
    work_dir = Path(work_dir) if work_dir else servegate_home() / "demo" / time.strftime("%Y%m%d-%H%M%S")
    work_dir.mkdir(parents=True, exist_ok=True)
    echo(f"servegate demo in {work_dir}")
    with own_prefect(work_dir) as prefect:
        echo(prefect.notice())
        return _story(work_dir, echo, prefect, started)


def _story(work_dir: Path, echo: Callable[[str], None], prefect: DemoPrefect, started: float) -> DemoSummary:
    """Steps 1 to 5 and the summary, on the demo's own Prefect."""
    from servegate.demo.train_demo import train_demo_model
    from servegate.deploy.record import DeployRequest
    from servegate.flows.deploy import run_deploy_flow
    from servegate.model_store import ModelStore

    store_root = work_dir / "store"
    tracking_uri = f"sqlite:///{work_dir / 'mlflow.db'}"
    store = ModelStore(store_root)
    echo("1/5 training the demo model (diabetes, scikit-learn's bundled data): baseline, broken, improved")
    # emit=False: no servegate.model.exported event (the one a deploy-model trigger answers); the demo deploys itself.
    files = {v: train_demo_model(out_dir=str(work_dir / "models"), variant=v, emit=False)
             for v in ("baseline", "broken", "improved")}
    outcomes: list[dict] = []

    def deploy(variant: str, **extra) -> dict:
        request = DeployRequest(model_path=files[variant]["model_path"], reference=files[variant]["reference"],
                                name=MODEL_NAME, store_root=str(store_root), tracking_uri=tracking_uri, **extra)
        outcome = run_deploy_flow(request)
        outcomes.append({"variant": variant, **outcome})
        reasons = "".join(f"\n      - {r}" for r in outcome["reasons"])
        echo(f"    -> version {outcome['version']}: {outcome['verdict']}; production serves "
             f"{outcome['production_version']}{reasons}")
        return outcome

    echo("2/5 deploying the baseline")
    first = deploy("baseline")
    if first["verdict"] != "promoted":
        raise ServingError(f"demo: the baseline was not promoted: {first['reasons']}")

    echo("3/5 starting a production server on " + str(store.base_path("production", MODEL_NAME)))
    with ProductionServer(store.base_path("production", MODEL_NAME), work_dir / "production-server.log",
                          work_dir / "traffic" / MODEL_NAME) as server:
        server.wait_for_version(first["version"])
        echo(f"    production server: {server.rest_url} (REST), {server.grpc_target} (gRPC), serving version "
             f"{first['version']}, recording its traffic")
        _record_production(server, production_rows(), echo)
        broken, improved, stats, served_now = _under_traffic(server, deploy, echo)

    seconds = time.perf_counter() - started
    ok = (first["verdict"] == "promoted" and broken["verdict"] == "rejected" and improved["verdict"] == "promoted"
          and served_now == improved["version"] and stats.failed == 0)
    echo("")
    echo(f"summary ({seconds:.0f} s): " + ("as expected" if ok else "NOT as expected"))
    for o in outcomes:
        echo(f"  {o['variant']:<9} version {o['version']}: {o['verdict']:<9} MLflow run {o['mlflow_run_id']}  "
             f"Prefect flow run {o['prefect_flow_run_id']}")
    echo(f"  production ({store.base_path('production', MODEL_NAME)}) serves version {served_now}")
    echo("")
    _echo_links(echo, tracking_uri, store_root, prefect)
    return DemoSummary(work_dir, outcomes, stats, served_now, tracking_uri, seconds, ok)
