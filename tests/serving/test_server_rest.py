"""The REST API against TensorFlow Serving's own answers for saved_model_half_plus_two_cpu.

One bundled server for the module, on the shared test data in place
(``--model_base_path`` points straight at it; nothing is copied).
"""

from __future__ import annotations

import json

import pytest
import requests

HALF_PLUS_TWO_STATUS = {
    "model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}


@pytest.fixture(scope="module")
def server(module_bundled_server, tfs_testdata):
    return module_bundled_server(
        [f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}", "--file_system_poll_wait_seconds=0.5"]
    )


def _get(server, path):
    return requests.get(server.rest_url + path, timeout=30)


def _post(server, path, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(server.rest_url + path, data=data, timeout=30)


def _sorted(value):
    return json.loads(json.dumps(value, sort_keys=True))


# ------------------------------------------------------------- TF Serving's answers


def test_predict_row_form_matches_tf_serving(server):
    response = _post(server, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_form_matches_tf_serving(server):
    response = _post(server, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]})
    assert (response.status_code, response.json()) == (200, {"outputs": [3.0, 3.5, 4.0]})


def test_predict_with_declared_shape_and_named_rows(server):
    # [-1, 1] as declared, rows given by input name, and an explicit signature_name.
    body = {"signature_name": "serving_default", "instances": [{"x": [1.0]}, {"x": [-2.0]}]}
    response = _post(server, "/v1/models/default:predict", body)
    assert (response.status_code, response.json()) == (200, {"predictions": [[2.5], [1.0]]})
    response = _post(server, "/v1/models/default:predict", {"inputs": {"x": [[0.1]]}})
    assert response.json() == {"outputs": [[2.05]]}  # float32 printed with its shortest digits


@pytest.mark.parametrize("prefix", ["/v1/models/default/versions/123", "/v1/models/default/versions/00123"])
def test_predict_by_version(server, prefix):
    response = _post(server, prefix + ":predict", {"instances": [2.0]})
    assert (response.status_code, response.json()) == (200, {"predictions": [3.0]})


def test_classify_matches_tf_serving(server):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    response = _post(server, "/v1/models/default:classify", body)
    assert (response.status_code, response.json()) == (200, {"results": [[["", 3.0]]]})


def test_regress_matches_tf_serving(server):
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}
    response = _post(server, "/v1/models/default/versions/123:regress", body)
    assert (response.status_code, response.json()) == (200, {"results": [3.0, 4.0]})


def test_regress_on_a_predict_signature_is_400(server):
    response = _post(server, "/v1/models/default:regress", {"examples": [{"x": 2.0}]})
    assert response.status_code == 400
    assert response.json() == {
        "error": "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/predict"
    }


def test_metadata_matches_tf_serving(server, tfs_testdata):
    expected = json.loads((tfs_testdata / "half_plus_two_model_metadata.json").read_text())
    for path in ("/v1/models/default/metadata", "/v1/models/default/versions/123/metadata"):
        response = _get(server, path)
        assert response.status_code == 200
        assert _sorted(response.json()) == _sorted(expected)


@pytest.mark.parametrize("path", ["/v1/models/default", "/v1/models/default/versions/123"])
def test_status(server, path):
    response = _get(server, path)
    assert (response.status_code, response.json()) == (200, HALF_PLUS_TWO_STATUS)


# ----------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "method, path, body, code, message",
    [
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/default/versions/7", None, 404, "Could not find version 7 of model default"),
        ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
        ("GET", "/v1/models/default/versions/7/metadata", None, 404,
         "Servable not found for request: Specific(default, 7)"),
        ("POST", "/v1/models/nope:predict", {"instances": [1.0]}, 404, "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/default/versions/7:predict", {"instances": [1.0]}, 404,
         "Servable not found for request: Specific(default, 7)"),
        ("POST", "/v1/models/default/labels/stable:predict", {"instances": [1.0]}, 400,
         "Unrecognized servable version label: stable"),
        ("GET", "/v1/models/default/labels/stable", None, 400, "Unrecognized servable version label: stable"),
        ("POST", "/v1/models/default:predict", {"instances": [1.0], "inputs": [1.0]}, 400,
         "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"),
        ("POST", "/v1/models/default:predict", {"signature_name": "serving_default"}, 400,
         "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/default:predict", {"inputs": {"q": [1.0]}}, 400,
         "input tensor alias not found in signature: q. Inputs expected to be in the set {x}."),
        ("POST", "/v1/models/default:predict", {"instances": [{"q": [1.0]}]}, 400,
         "input tensor alias not found in signature: q. Inputs expected to be in the set {x}."),
        ("POST", "/v1/models/default:predict", {"signature_name": "nope", "instances": [1.0]}, 400,
         'Serving signature key "nope" not found.'),
        ("POST", "/v1/models/default:explain", {"instances": [1.0]}, 404,
         "Malformed request: POST /v1/models/default:explain"),
    ],
)
def test_error_forms(server, method, path, body, code, message):
    response = _get(server, path) if method == "GET" else _post(server, path, body)
    assert response.status_code == code
    assert response.json() == {"error": message}


def test_other_methods_get_a_json_404(server):
    response = requests.put(server.rest_url + "/v1/models/default", timeout=30)
    assert (response.status_code, response.json()) == (404, {"error": "Malformed request: PUT /v1/models/default"})


def test_malformed_json_is_400(server):
    response = _post(server, "/v1/models/default:predict", '{"instances": [1.0')
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert response.json()["error"].startswith("JSON Parse error:")


def test_ragged_or_non_numeric_input_is_400_naming_the_input(server):
    for body in ({"instances": [[1.0], [1.0, 2.0]]}, {"inputs": {"x": [["a"]]}}):
        response = _post(server, "/v1/models/default:predict", body)
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith("Failed to process input 'x': ")


def test_nan_and_infinity_literals_are_accepted_and_returned(server):
    # TensorFlow Serving's JSON parser accepts NaN/Infinity; so does the bundled server.
    response = _post(server, "/v1/models/default:predict", '{"instances": [NaN, Infinity, 2.0]}')
    assert response.status_code == 200
    assert response.text.replace(" ", "") == '{"predictions":[NaN,Infinity,3.0]}'


def test_concurrent_requests_all_succeed(server):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        return _post(server, "/v1/models/default:predict", {"instances": [float(i)]}).json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(64)))
    assert results == [{"predictions": [0.5 * i + 2.0]} for i in range(64)]
