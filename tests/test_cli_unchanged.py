"""A re-run with the model file production already serves: ``unchanged``, exit 0, nothing created.

As CI meets it (a subprocess in a brand-new HOME). Production's version is staged here through the
store's API with the digest a deploy keeps (the whole story, two real deploys, is
tests/flows/test_cli_rerun.py, in CI's second step).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cli_support import assert_nothing_opened, files, home, json_of, run_cli  # noqa: F401


def _production_from(store: Path, source: Path, digest_of: Path) -> None:
    """Production serving version 1 staged from ``digest_of`` (as a deploy of that model leaves it)."""
    from servegate.deploy.unchanged import MODEL_DIGEST, model_digest
    from servegate.model_store import ModelStore

    s = ModelStore(store)
    s.promote("m", s.stage("m", source, detail={MODEL_DIGEST: model_digest(digest_of)}))


def test_a_rerun_with_the_model_production_serves_creates_nothing(home, files, hp2):
    store = home / "store"
    _production_from(store, hp2, hp2)
    from servegate.model_store import ModelStore

    history = ModelStore(store).layout.history_file("m")
    before = history.read_bytes()
    assert before.count(b"\n") == 2  # stage, promote
    result = run_cli(home, "deploy", "--model", str(hp2), "--name", "m", "--reference", str(files["hp2.parquet"]),
                     "--store", str(store), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json_of(result)
    assert (outcome["verdict"], outcome["version"], outcome["production_version"]) == ("unchanged", 1, 1), outcome
    assert outcome["mlflow_run_id"] is None and outcome["prefect_flow_run_id"] is None
    assert "checking the model" not in result.stderr
    assert_nothing_opened(home, store / "staging")
    assert sorted(p.name for p in (store / "production" / "m").iterdir()) == ["1"]
    assert history.read_bytes() == before  # no history line either
    text = run_cli(home, "deploy", "--model", str(hp2), "--name", "m", "--reference", str(files["hp2.parquet"]),
                   "--store", str(store))
    assert text.returncode == 0 and text.stdout.startswith("m: already serving version 1"), text.stdout


@pytest.fixture
def healthy_api_url():
    """A URL whose /health answers 200 (all ``deploy`` asks of a Prefect API before the export), so
    that a deploy that goes past the re-run check reaches the export without starting a Prefect server."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()


@pytest.mark.reliability  # an export each (~10 s): CI's second step
@pytest.mark.parametrize("how", ["another model file", "--force-new-version"])
def test_another_model_or_the_flag_deploys_anew(how, home, files, hp2, tmp_path, healthy_api_url):
    """Past the re-run check the deploy goes on: it exports (then a config naming an output the model
    lacks stops it, still before any run)."""
    store = home / "store"
    other = tmp_path / "other"
    shutil.copytree(hp2, other)
    (other / "assets.extra").mkdir(exist_ok=True)
    (other / "assets.extra" / "note.txt").write_text("retrained")  # other bytes: another digest
    _production_from(store, hp2, other if how == "another model file" else hp2)
    config = home / "v.yaml"
    config.write_text("output: nope\n")
    extra = ["--force-new-version"] if how == "--force-new-version" else []
    result = run_cli(home, "deploy", "--model", str(hp2), "--name", "m", "--reference", str(files["hp2.parquet"]),
                     "--store", str(store), "--config", str(config), "--json", *extra,
                     env={"PREFECT_API_URL": healthy_api_url})
    assert result.returncode == 2, result.stderr[-2000:]
    assert json_of(result)["error"]["subject"] == "output"
    assert "export:" in result.stderr


def test_a_rerun_still_checks_its_prefect_api(home, files, hp2, closed_port_url):
    """A re-run with a CI job's Prefect API unreachable is that error, not "unchanged"."""
    store = home / "store"
    _production_from(store, hp2, hp2)
    result = run_cli(home, "deploy", "--model", str(hp2), "--name", "m", "--reference", str(files["hp2.parquet"]),
                     "--store", str(store), "--json", env={"PREFECT_API_URL": closed_port_url + "/api"})
    assert result.returncode == 2
    assert json_of(result)["error"]["kind"] == "OrchestrationError"
