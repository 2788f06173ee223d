"""Predictions over REST and gRPC equal in-process ``serving_default``; several inputs and outputs,
strings and ``b64``; gRPC Predict, GetModelMetadata and GetModelStatus.

One server for the module with two models from a config file: ``tiny`` (the
session's tiny Keras regressor) and ``multi`` (a TF function with a float and a
string input and three outputs, built here).
"""

from __future__ import annotations

import base64

import grpc
import numpy as np
import pytest
import requests

from tests import modelzoo


@pytest.fixture(scope="module")
def multi_savedmodel(tmp_path_factory):
    """``serving_default(a: float32 [-1, 2], s: string [-1]) -> doubled, length, echo_bytes``."""
    import tensorflow as tf

    class Multi(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                      tf.TensorSpec([None], tf.string, name="s")])
        def serve(self, a, s):
            return {"doubled": a * 2.0, "length": tf.strings.length(s), "echo_bytes": s}

    module = Multi()
    path = tmp_path_factory.mktemp("multi") / "savedmodel"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def server(module_bundled_server, tiny_savedmodel, multi_savedmodel, tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    (root / "tiny").mkdir()
    (root / "tiny" / "1").symlink_to(tiny_savedmodel)  # a version directory may be a symlink (canary runners)
    (root / "multi").mkdir()
    (root / "multi" / "3").symlink_to(multi_savedmodel)
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "tiny" base_path: "{root / "tiny"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "multi" base_path: "{root / "multi"}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    return module_bundled_server([f"--model_config_file={config}"], wait_for="tiny")


@pytest.fixture(scope="module")
def in_process(tiny_savedmodel):
    import tensorflow as tf

    signature = tf.saved_model.load(str(tiny_savedmodel)).signatures["serving_default"]
    return lambda x: signature(features=tf.constant(x))["output_0"].numpy()


@pytest.fixture(scope="module")
def stubs(server):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def _post(server, path, body):
    return requests.post(server.rest_url + path, json=body, timeout=30)


# ------------------------------------------------------------------ parity


def test_rest_rows_and_columns_equal_in_process_serving_default(server, in_process):
    x = modelzoo.reference_inputs(32)
    expected = in_process(x)
    rows = _post(server, "/v1/models/tiny:predict", {"instances": x.tolist()})
    columns = _post(server, "/v1/models/tiny:predict", {"inputs": {"features": x.tolist()}})
    assert rows.status_code == columns.status_code == 200
    np.testing.assert_allclose(np.array(rows.json()["predictions"], np.float32), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.array(columns.json()["outputs"], np.float32), expected, rtol=1e-6, atol=1e-7)


def test_grpc_predict_equals_in_process_serving_default(stubs, in_process):
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto, tensor_proto_to_ndarray

    x = modelzoo.reference_inputs(256)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.inputs["features"].CopyFrom(ndarray_to_tensor_proto(x))
    response = stubs[0].Predict(request, timeout=30)
    assert response.model_spec.name == "tiny"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs) == ["output_0"]
    assert response.outputs["output_0"].tensor_content  # the bulk encoding, not per-element lists
    np.testing.assert_array_equal(tensor_proto_to_ndarray(response.outputs["output_0"]), in_process(x))


def test_grpc_predict_accepts_make_tensor_proto_and_version(stubs):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "multi"
    request.model_spec.version.value = 3
    request.inputs["a"].CopyFrom(tf.make_tensor_proto([[1.0, 2.0]], dtype=tf.float32))
    request.inputs["s"].CopyFrom(tf.make_tensor_proto([b"abc"]))
    request.output_filter.append("length")
    response = stubs[0].Predict(request, timeout=30)
    assert list(response.outputs) == ["length"]
    assert tf.make_ndarray(response.outputs["length"]).tolist() == [3]


# -------------------------------------------------- several inputs and outputs


def test_rest_rows_with_named_inputs_and_b64(server):
    body = {"instances": [{"a": [1.0, 2.0], "s": {"b64": base64.b64encode(b"\x00\xff").decode()}},
                          {"a": [0.5, 0.25], "s": "hello"}]}
    response = _post(server, "/v1/models/multi:predict", body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "predictions": [
            {"doubled": [2.0, 4.0], "echo_bytes": {"b64": "AP8="}, "length": 2},
            {"doubled": [1.0, 0.5], "echo_bytes": {"b64": base64.b64encode(b"hello").decode()}, "length": 5},
        ]
    }


def test_rest_columns_with_named_inputs(server):
    response = _post(server, "/v1/models/multi:predict", {"inputs": {"a": [[1.0, 1.5]], "s": ["xy"]}})
    assert response.status_code == 200, response.text
    assert response.json() == {"outputs": {"doubled": [[2.0, 3.0]], "echo_bytes": [{"b64": "eHk="}], "length": [2]}}


def test_rest_missing_input_is_400_naming_it(server):
    response = _post(server, "/v1/models/multi:predict", {"inputs": {"a": [[1.0, 1.5]]}})
    assert response.status_code == 400
    assert response.json() == {
        "error": "input size does not match signature: 1!=2 len({a}) != len({a,s}). "
        "Sent extra: {}. Missing but required: {s}."
    }


def test_rest_unnamed_rows_for_two_inputs_is_400(server):
    response = _post(server, "/v1/models/multi:predict", {"instances": [[1.0, 2.0]]})
    assert response.status_code == 400
    assert "keyed by the signature's inputs {a,s}" in response.json()["error"]


def test_rest_incompatible_shape_fails_in_the_graph_as_400(server):
    response = _post(server, "/v1/models/tiny:predict", {"instances": [[1.0, 2.0]]})  # 2 features, not 4
    assert response.status_code == 400
    assert response.json()["error"].startswith("Matrix size-incompatible: In[0]: [1,2]")


# --------------------------------------------------------- gRPC status/metadata


def test_grpc_get_model_status(stubs):
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tiny"
    response = stubs[1].GetModelStatus(request, timeout=30)
    [status] = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert (status.status.error_code, status.status.error_message) == (0, "")


def test_grpc_unknown_model_is_not_found(stubs):
    from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        stubs[1].GetModelStatus(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Could not find any versions of model nope"

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "tiny"
    predict.model_spec.version.value = 9
    with pytest.raises(grpc.RpcError) as info:
        stubs[0].Predict(predict, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Servable not found for request: Specific(tiny, 9)"


def test_grpc_wrong_input_name_is_invalid_argument(stubs):
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.inputs["feature"].CopyFrom(ndarray_to_tensor_proto(np.zeros((1, 4), np.float32)))
    with pytest.raises(grpc.RpcError) as info:
        stubs[0].Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("input tensor alias not found in signature: feature.")


def test_grpc_get_model_metadata(stubs, tiny_savedmodel):
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "tiny"
    request.metadata_field.append("signature_def")
    response = stubs[0].GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    sig = signatures.signature_def["serving_default"]
    assert list(sig.inputs) == ["features"] and list(sig.outputs) == ["output_0"]
    assert response.model_spec.version.value == 1
