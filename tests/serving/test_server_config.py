"""A ``--model_config_file`` with several models, version policies and labels (one server).

The config points at TensorFlow Serving's test models in place:
- ``saved_model_half_plus_two_2_versions``: policy ``all``, labels stable=123, canary=124;
- ``half_plus_three``: the default ``latest`` policy;
- ``only_123``: the same two-version base path with ``specific { versions: 123 }``.
"""

from __future__ import annotations

import json

import pytest
import requests

TWO_VERSIONS = "saved_model_half_plus_two_2_versions"


def _status(*versions):
    return {
        "model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in versions
        ]
    }


@pytest.fixture(scope="module")
def server(module_bundled_server, tfs_testdata, tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "{TWO_VERSIONS}"
    base_path: "{tfs_testdata / TWO_VERSIONS}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 123 }}
    version_labels {{ key: "canary" value: 124 }}
  }}
  config {{
    name: "half_plus_three"
    base_path: "{tfs_testdata / 'saved_model_half_plus_three'}"
    model_platform: "tensorflow"
  }}
  config {{
    name: "only_123"
    base_path: "{tfs_testdata / TWO_VERSIONS}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 123 }} }}
  }}
}}
""")
    return module_bundled_server([f"--model_config_file={config}", "--file_system_poll_wait_seconds=0.5"],
                                 wait_for=TWO_VERSIONS)


def _get(server, path):
    return requests.get(server.rest_url + path, timeout=30)


def _predict(server, path, instances):
    return requests.post(server.rest_url + path + ":predict", json={"instances": instances}, timeout=30)


def test_status_lists_versions_highest_first(server):
    assert _get(server, f"/v1/models/{TWO_VERSIONS}").json() == _status(124, 123)
    assert _get(server, "/v1/models/half_plus_three").json() == _status(123)
    assert _get(server, "/v1/models/only_123").json() == _status(123)


def test_two_versions_metadata_matches_tf_serving(server, tfs_testdata):
    expected = json.loads((tfs_testdata / "saved_model_half_plus_two_2_versions_metadata.json").read_text())
    response = _get(server, f"/v1/models/{TWO_VERSIONS}/versions/123/metadata")
    assert response.status_code == 200
    assert json.dumps(response.json(), sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_latest_is_the_highest_version(server):
    assert _get(server, f"/v1/models/{TWO_VERSIONS}/metadata").json()["model_spec"]["version"] == "124"
    assert _get(server, "/v1/models/only_123/metadata").json()["model_spec"]["version"] == "123"


@pytest.mark.parametrize("label, version", [("stable", "123"), ("canary", "124")])
def test_labels_route_to_their_versions(server, label, version):
    prefix = f"/v1/models/{TWO_VERSIONS}/labels/{label}"
    assert _get(server, prefix + "/metadata").json()["model_spec"]["version"] == version
    assert _get(server, prefix).json() == _status(int(version))
    response = _predict(server, prefix, [2.0, 3.0])
    assert (response.status_code, response.json()) == (200, {"predictions": [3.0, 3.5]})


def test_each_model_serves_its_own_function(server):
    assert _predict(server, "/v1/models/half_plus_three", [2.0]).json() == {"predictions": [4.0]}
    assert _predict(server, f"/v1/models/{TWO_VERSIONS}/versions/123", [2.0]).json() == {"predictions": [3.0]}


def test_specific_policy_does_not_load_other_versions(server):
    response = _predict(server, "/v1/models/only_123/versions/124", [2.0])
    assert response.status_code == 404
    assert response.json() == {"error": "Servable not found for request: Specific(only_123, 124)"}
    assert _get(server, "/v1/models/only_123/versions/124").json() == {
        "error": "Could not find version 124 of model only_123"
    }


def test_unknown_label_is_an_error(server):
    response = _predict(server, f"/v1/models/{TWO_VERSIONS}/labels/beta", [2.0])
    assert (response.status_code, response.json()) == (400, {"error": "Unrecognized servable version label: beta"})
