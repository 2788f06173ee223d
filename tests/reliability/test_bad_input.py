"""A catalogue of bad inputs through ``servegate deploy``: each exits 2 with a message naming the problem,
and the production tree is byte-identical before and after.

Production is made non-empty first (one good deploy), so that "nothing
changed" means something. The cases run four at a time (each is its own
``servegate`` process) to keep the catalogue inside the test budget.
"""

from __future__ import annotations

import json

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.model_store.treeutil import diff_snapshots
from tests.support.ports import free_port

NAME = "badin"


@dataclass(frozen=True)
class Case:
    id: str
    expect: tuple[str, ...]                 # substrings of stderr (case-insensitive), the problem named
    model: str = "good"                     # key into the files dict, or a path made by the fixture
    reference: str = "reference"
    name: str = NAME
    args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)


CLOSED = free_port()  # nothing listens there

CASES = [
    # model files
    Case("model-missing", ("model not found", "gone.keras"), model="gone"),
    Case("model-empty", ("empty", "empty.keras"), model="empty"),
    Case("model-truncated-keras", ("truncated.keras",), model="truncated"),
    Case("model-not-a-model", ("not a keras model", "text.keras"), model="text"),
    Case("model-wrong-format", ("model.onnx",), model="onnx"),
    Case("model-h5-not-hdf5", ("not an hdf5 file", "fake.h5"), model="fake_h5"),
    Case("savedmodel-empty-dir", ("model directory is empty",), model="empty_dir"),
    Case("savedmodel-corrupt-pb", ("saved_model.pb",), model="corrupt_pb"),
    Case("savedmodel-no-serving-signature", ("serving_default",), model="no_signature"),
    # reference files
    Case("reference-missing", ("reference file", "gone.parquet", "no such file"), reference="gone"),
    Case("reference-empty", ("reference file", "empty.parquet"), reference="empty"),
    Case("reference-a-directory", ("reference file", "not a regular file"), reference="dir"),
    Case("reference-wrong-shape", ("reference file", "shape.parquet", "features"), reference="shape"),
    Case("reference-wrong-dtype", ("reference file", "dtype.parquet", "features"), reference="dtype"),
    Case("reference-nan", ("reference file", "nan.parquet", "nan"), reference="nan"),
    Case("reference-no-rows", ("reference file", "norows.parquet"), reference="norows"),
    Case("reference-not-parquet", ("reference file", "garbage.parquet"), reference="garbage"),
    # validation configs
    Case("config-does-not-parse", ("bad.yaml",), args=("--config", "{bad_yaml}")),
    Case("config-out-of-range", ("parity.atol",), args=("--config", "{range_yaml}")),
    Case("config-unknown-field", ("nosuchcheck",), args=("--config", "{unknown_yaml}")),
    Case("config-missing", ("gone.yaml",), args=("--config", "{gone_yaml}")),
    # model names that try to leave the store
    Case("name-dotdot", ("model name", "../escape"), name="../escape"),
    Case("name-absolute", ("model name", "/etc"), name="/etc"),
    Case("name-dot", ("model name",), name=".."),
    # unknown runner, unreachable services
    Case("serving-unknown", ("--serving", "kubernetes"), args=("--serving", "kubernetes")),
    Case("docker-unreachable", ("docker engine not reachable", "--serving process"),
         args=("--serving", "docker"), env={"DOCKER_HOST": "unix:///nonexistent.sock"}),
    Case("mlflow-unreachable", ("mlflow tracking server not reachable", f"127.0.0.1:{CLOSED}"),
         env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{CLOSED}"}),
    Case("prefect-unreachable", ("prefect api not reachable", f"127.0.0.1:{CLOSED}"),
         env={"PREFECT_API_URL": f"http://127.0.0.1:{CLOSED}/api"}),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, model_files) -> dict[str, Path]:
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    d = tmp_path_factory.mktemp("bad-inputs")
    files: dict[str, Path] = {"good": model_files.good, "reference": model_files.reference, "gone": d / "gone.keras"}
    files["empty"] = d / "empty.keras"
    files["empty"].write_bytes(b"")
    data = model_files.good.read_bytes()
    files["truncated"] = d / "truncated.keras"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["text"] = d / "text.keras"
    files["text"].write_text("this is not a model\n")
    files["onnx"] = d / "model.onnx"
    files["onnx"].write_bytes(b"\x08\x07\x12\x07pytorch")
    files["fake_h5"] = d / "fake.h5"
    files["fake_h5"].write_bytes(b"not hdf5 at all" * 10)
    files["empty_dir"] = d / "empty-savedmodel"
    files["empty_dir"].mkdir()
    files["corrupt_pb"] = d / "corrupt-savedmodel"
    shutil.copytree(model_files.savedmodel, files["corrupt_pb"])
    (files["corrupt_pb"] / "saved_model.pb").write_bytes(b"\xff\x00garbage" * 20)

    class NoSignature(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def double(self, x):
            return x * self.w

    files["no_signature"] = d / "no-signature-savedmodel"
    tf.saved_model.save(NoSignature(), str(files["no_signature"]), signatures={})

    ref = pd.read_parquet(model_files.reference)
    files["gone_ref"] = d / "gone.parquet"
    files["empty_ref"] = d / "empty.parquet"
    files["empty_ref"].write_bytes(b"")
    files["dir_ref"] = d / "ref-dir.parquet"
    files["dir_ref"].mkdir()
    files["shape_ref"] = d / "shape.parquet"
    pd.DataFrame({"features": [r[:3] for r in ref["features"]], "label": ref["label"]}).to_parquet(files["shape_ref"])
    files["dtype_ref"] = d / "dtype.parquet"
    pd.DataFrame({"features": ["a,b,c,d"] * len(ref), "label": ref["label"]}).to_parquet(files["dtype_ref"])
    files["nan_ref"] = d / "nan.parquet"
    rows = [np.asarray(r, dtype="float32") for r in ref["features"]]
    rows[5][2] = np.nan
    pd.DataFrame({"features": [r.tolist() for r in rows], "label": ref["label"]}).to_parquet(files["nan_ref"])
    files["norows_ref"] = d / "norows.parquet"
    ref.iloc[:0].to_parquet(files["norows_ref"])
    files["garbage_ref"] = d / "garbage.parquet"
    files["garbage_ref"].write_bytes(b"PAR1 but not really" * 50)

    files["bad_yaml"] = d / "bad.yaml"
    files["bad_yaml"].write_text("parity: [atol: 1\n  : : :\n")
    files["range_yaml"] = d / "range.yaml"
    files["range_yaml"].write_text("parity:\n  atol: -1\n")
    files["unknown_yaml"] = d / "unknown.yaml"
    files["unknown_yaml"].write_text("nosuchcheck:\n  enabled: true\n")
    files["gone_yaml"] = d / "gone.yaml"
    return files


@pytest.fixture(scope="module")
def production_ws(tmp_path_factory, prefect_api_url, model_files):
    """A workspace whose production already serves version 1."""
    from tests.reliability.harness import Workspace

    ws = Workspace(tmp_path_factory.mktemp("badin-ws"), prefect_api_url)
    first = ws.deploy(model_files.good, NAME, model_files.reference)
    assert first.returncode == 0, first.describe()
    yield ws
    ws.close()


def _run_case(ws, files: dict[str, Path], case: Case):
    model = files[case.model]
    reference = files[case.reference if case.reference == "reference" else case.reference + "_ref"]
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in case.args]
    cmd = ["deploy", "--model", str(model), "--name", case.name, "--reference", str(reference), "--json", *args]
    return ws.servegate(*cmd, env={**ws.env, **case.env}, timeout=180)


def _json_error(stdout: str) -> bool:
    """--json on an error: stdout is one object naming the error's kind and message."""
    try:
        error = json.loads(stdout)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(error.get("kind") and error.get("message"))


def test_catalogue_has_at_least_20_cases():
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)


# Long (a whole deploy or more): CI's second step runs it (-m reliability); the default suite stays under 10 minutes.
@pytest.mark.reliability
@pytest.mark.slow
def test_every_bad_input_exits_2_naming_the_problem_and_production_is_untouched(production_ws, bad_files):
    ws = production_ws
    before = ws.production_snapshot(NAME)
    history_before = (ws.store / ".servegate" / NAME / "history.jsonl").read_bytes()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: (c, _run_case(ws, bad_files, c)), CASES))
    problems = []
    for case, result in results:
        # The message is the last "error: ..." block at the end; Prefect may log a task's traceback above it.
        lines = result.stderr.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
        message = "\n".join(lines[starts[-1]:]).lower() if starts else ""
        missing = [s for s in case.expect if s.lower() not in message]
        if result.returncode != 2 or missing or not message or not _json_error(result.stdout):
            problems.append(f"{case.id}: exit {result.returncode}, missing {missing}; stderr tail:\n"
                            f"{result.stderr[-1500:]}\nstdout: {result.stdout[-300:]}")
    assert not problems, "\n\n".join(problems)
    assert diff_snapshots(before, ws.production_snapshot(NAME)) == []
    # Nothing was staged either: the history has not moved, no model left the store's root.
    assert (ws.store / ".servegate" / NAME / "history.jsonl").read_bytes() == history_before
    assert not (ws.store.parent / "escape").exists() and not (ws.store / "escape").exists()
