"""A deploy's request is declared once: the ``deploy-model`` flow's parameters are DeployRequest's fields."""

from __future__ import annotations

import inspect

from servegate.deploy.record import DeployRequest
from servegate.flows.deploy import deploy_model


def test_the_flows_parameters_are_the_requests_fields():
    request = DeployRequest(model_path="m.keras", name="m", reference="r.csv", store_root="/tmp/store")
    assert set(inspect.signature(deploy_model.fn).parameters) == set(request.to_parameters())


def test_a_request_survives_the_trip_through_the_flows_parameters():
    request = DeployRequest(model_path="m.keras", name="m", reference="r.csv", store_root="/tmp/store",
                            custom_objects=("a.b",), canary_deadline_s=12.5, bake_s=3.0, work_dir="/tmp/w")
    parameters = request.to_parameters()
    assert parameters["store"] == "/tmp/store" and parameters["custom_objects"] == ["a.b"]
    assert DeployRequest.from_parameters(parameters) == request


def test_a_work_dir_where_the_preflight_passed_has_its_inputs_checked(tmp_path):
    from servegate.deploy import recording
    from servegate.deploy.plain import new_record

    request = DeployRequest(model_path="m.keras", name="m", reference="r.csv", store_root=str(tmp_path / "s"),
                            work_dir=str(tmp_path))
    assert not new_record(request).inputs_checked
    (tmp_path / recording.PREFLIGHT_TIMINGS).write_text("{}")
    assert new_record(request).inputs_checked  # the flow run the CLI starts checks nothing twice
