"""The serving client against the shared canary: gRPC and REST agree, addressing, status, errors."""

from __future__ import annotations

import numpy as np
import pytest

from servegate.errors import ServingError
from servegate.serving.client import PredictError, ServingClient, from_tensor_proto, to_tensor_proto
from tests.validation.conftest import MODEL_NAME, VERSION


@pytest.fixture(scope="module")
def clients(canary):
    runner, _ = canary
    grpc_client = ServingClient.for_runner(runner)
    rest_client = ServingClient(MODEL_NAME, rest_url=runner.rest_url)
    yield grpc_client, rest_client
    grpc_client.close()
    rest_client.close()


def test_tensor_proto_round_trip_uses_tensor_content():
    for array in (np.arange(12, dtype="float32").reshape(3, 4), np.array([[1, 2]], dtype="int64"),
                  np.array([True, False])):
        proto = to_tensor_proto(array)
        assert proto.tensor_content  # raw bytes, not one repeated field entry per number
        back = from_tensor_proto(proto)
        assert back.dtype == array.dtype and np.array_equal(back, array)
    strings = from_tensor_proto(to_tensor_proto(np.array(["a", "bc"], dtype=object)))
    assert list(strings) == [b"a", b"bc"]


def test_grpc_and_rest_answer_the_same_numbers(clients, reference_arrays):
    grpc_client, rest_client = clients
    x = reference_arrays["features"][:32]
    by_grpc = grpc_client.predict({"features": x}, version=VERSION["good"])
    by_rest = rest_client.predict({"features": x}, version=VERSION["good"])
    assert grpc_client.transport == "grpc" and rest_client.transport == "rest"
    np.testing.assert_allclose(by_grpc.outputs["prediction"][:, 0], reference_arrays["golden"][:32], rtol=1e-5)
    np.testing.assert_allclose(next(iter(by_rest.outputs.values())).reshape(-1, 1), by_grpc.outputs["prediction"],
                               rtol=1e-6)
    assert by_grpc.latency_s > 0 and by_grpc.model_version == VERSION["good"]


def test_labels_address_their_versions(clients, reference_arrays):
    grpc_client, rest_client = clients
    x = reference_arrays["features"][:8]
    for client in clients:
        stable = next(iter(client.predict({"features": x}, label="stable").outputs.values()))
        canary = next(iter(client.predict({"features": x}, label="canary").outputs.values()))
        np.testing.assert_allclose(np.ravel(canary) - np.ravel(stable), 0.5, rtol=1e-4)
    with pytest.raises(ValueError, match="not both"):
        grpc_client.predict({"features": x}, version=1, label="stable")


def test_status_and_metadata_over_both_transports(clients):
    grpc_client, rest_client = clients
    states = {int(s["version"]): s["state"] for s in rest_client.status()}
    assert states == {v: "AVAILABLE" for v in VERSION.values()}
    for client in clients:
        meta = client.metadata(version=VERSION["renamed"])
        outputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]
        assert set(outputs) == {"score"}
    grpc_only = ServingClient(MODEL_NAME, grpc_target=grpc_client.grpc_target)
    try:
        assert [s["state"] for s in grpc_only.status(version=VERSION["good"])] == ["AVAILABLE"]
    finally:
        grpc_only.close()


def test_predict_many_keeps_going_and_reports_each_failure(clients, reference_arrays):
    grpc_client, _ = clients
    x = reference_arrays["features"]
    batches = [{"features": x[i:i + 50]} for i in range(0, 200, 50)] + [{"features": x[:5, :3]}]  # last: bad shape
    outcomes = sorted(grpc_client.predict_many(batches, concurrency=3, version=VERSION["good"]), key=lambda o: o.index)
    assert [o.ok for o in outcomes] == [True, True, True, True, False]
    assert [o.rows for o in outcomes] == [50, 50, 50, 50, 5]
    assert "Predict lin" in outcomes[-1].error and all(o.latency_s > 0 for o in outcomes)
    with pytest.raises(PredictError, match="Predict lin"):
        grpc_client.predict({"features": x[:2]}, version=99)


def test_a_client_needs_an_endpoint():
    with pytest.raises(ServingError, match="give a rest_url or a grpc_target"):
        ServingClient("m")
    with pytest.raises(ServingError, match="transport 'grpc' asked for but no grpc_target"):
        ServingClient("m", rest_url="http://127.0.0.1:1", transport="grpc")


def test_predict_all_batches_and_reassembles_rows_in_order(clients, reference_arrays):
    grpc_client, _ = clients
    x = reference_arrays["features"]
    outputs, outcomes = grpc_client.predict_all({"features": x}, batch_size=50, concurrency=3, label="stable")
    assert [o.rows for o in outcomes] == [50] * 5 + [6]
    np.testing.assert_allclose(outputs["prediction"][:, 0], reference_arrays["golden"], rtol=1e-5)
    with pytest.raises(PredictError, match=r"1 of 1 batches failed; rows 0..4"):
        grpc_client.predict_all({"features": x[:5, :3]}, version=VERSION["good"])


def test_batches_after_the_deadline_are_reported_not_sent():
    client = ServingClient("m", grpc_target="127.0.0.1:9")  # nothing listens: a sent batch would fail differently
    batches = [{"features": np.zeros((2, 4), "float32")}] * 3
    outcomes = list(client.predict_many(batches, deadline_s=0.0))
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert all("deadline of 0 s passed before this batch was sent" in o.error for o in outcomes)
    client.close()
