"""CanarySpec checks, the generated model config, the canary base path, ports, make_runner: no server needed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from servegate.errors import ConfigError, ServingError
from servegate.serving.runners import CanarySpec, CanarySpecError, PortInUseError, ProcessRunner, make_runner
from servegate.serving.runners.base import build_canary_base_path, model_config_text
from servegate.ports import pick_free_ports, port_is_free
from tests.serving.runner_fixtures import half_plus_two_versions, isolated_home  # noqa: F401


def test_spec_rejects_bad_model_name(half_plus_two_versions):
    for bad in ("", "../etc", "a/b", "-x", "a..b"):
        with pytest.raises(CanarySpecError, match="model name"):
            CanarySpec(bad, half_plus_two_versions)


def test_spec_rejects_missing_dir_and_non_savedmodel(tmp_path, tfs_testdata):
    with pytest.raises(CanarySpecError, match=r"version 3 not found: .*nowhere"):
        CanarySpec("m", {3: tmp_path / "nowhere"})
    bad = tfs_testdata / "bad_half_plus_two" / "00000123"  # a TF1 checkpoint, no saved_model.pb
    with pytest.raises(CanarySpecError, match=r"is not a SavedModel: expected saved_model.pb"):
        CanarySpec("m", {123: bad})


def test_spec_rejects_bad_versions_and_labels(half_plus_two_versions):
    path = half_plus_two_versions[123]
    with pytest.raises(CanarySpecError, match="no versions"):
        CanarySpec("m", {})
    for version in (0, -1, "7", True):
        with pytest.raises(CanarySpecError, match="expected a positive integer"):
            CanarySpec("m", {version: path})
    with pytest.raises(CanarySpecError, match=r"label 'canary' points at version 9, .*\[123\]"):
        CanarySpec("m", {123: path}, labels={"canary": 9})
    with pytest.raises(CanarySpecError, match=r"label '1bad' is invalid"):
        CanarySpec("m", {123: path}, labels={"1bad": 123})
    assert issubclass(CanarySpecError, ConfigError)


def test_model_config_text_lists_specific_versions_and_labels(half_plus_two_versions):
    spec = CanarySpec("hp2", half_plus_two_versions, labels={"stable": 123, "canary": 124})
    assert spec.needs_config_file
    text = model_config_text(spec, "/models/hp2")
    assert 'name: "hp2"' in text and 'base_path: "/models/hp2"' in text
    assert "model_version_policy { specific { versions: 123 versions: 124 } }" in text
    assert 'version_labels { key: "stable" value: 123 }' in text
    assert 'version_labels { key: "canary" value: 124 }' in text
    assert text.count("{") == text.count("}")
    # The same text must parse as TensorFlow Serving's ModelServerConfig proto.
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    config = parsed.model_config_list.config[0]
    assert list(config.model_version_policy.specific.versions) == [123, 124]
    assert dict(config.version_labels) == {"stable": 123, "canary": 124}


def test_single_version_needs_no_config(half_plus_two_versions):
    assert not CanarySpec("hp2", {124: half_plus_two_versions[124]}).needs_config_file


def test_canary_base_path_shows_only_spec_versions(tmp_path, half_plus_two_versions):
    spec = CanarySpec("hp2", {124: half_plus_two_versions[124]})
    model_dir = build_canary_base_path(spec, tmp_path)
    assert model_dir == tmp_path / "hp2"
    assert sorted(p.name for p in model_dir.iterdir()) == ["124"]
    assert (model_dir / "124").resolve() == half_plus_two_versions[124].resolve()


def test_make_runner_unknown_kind(half_plus_two_versions):
    with pytest.raises(ServingError, match=r"runner kind 'k8s' is unknown: expected one of process, docker"):
        make_runner("k8s", CanarySpec("hp2", half_plus_two_versions))


def test_free_ports_are_distinct_and_free():
    rest, grpc = pick_free_ports(2)
    assert rest != grpc and port_is_free(rest) and port_is_free(grpc)


def test_explicit_port_in_use_is_named_and_stop_is_safe(isolated_home, half_plus_two_versions):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = ProcessRunner(CanarySpec("hp2", half_plus_two_versions), rest_port=port,
                               grpc_port=pick_free_ports(1)[0])
        with pytest.raises(PortInUseError, match=rf"port\(s\) \[{port}\] on 127.0.0.1 already in use"):
            runner.start()
        runner.stop()
        runner.stop()
        assert runner.workdir is None


def test_picked_ports_skip_taken_ones(isolated_home, half_plus_two_versions):
    # Narrow seam: a picker that first hands out a port someone holds; the runner must pick again.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = taken.getsockname()[1]
        picks = iter([[held, pick_free_ports(1)[0]]])
        runner = ProcessRunner(CanarySpec("hp2", half_plus_two_versions),
                               port_picker=lambda n: next(picks, None) or pick_free_ports(n))
        rest, grpc = runner._pick_ports()
        assert held not in (rest, grpc)


def test_stop_before_start_and_no_endpoint_before_start(half_plus_two_versions):
    runner = ProcessRunner(CanarySpec("hp2", half_plus_two_versions))
    runner.stop()
    assert runner.logs() == ""
    with pytest.raises(ServingError, match="no endpoint before start"):
        runner.rest_url


def test_unknown_server_choice(half_plus_two_versions):
    with pytest.raises(ServingError, match=r"server 'java' is unknown"):
        ProcessRunner(CanarySpec("hp2", half_plus_two_versions), server="java")


def test_spec_paths_are_resolved(tmp_path, half_plus_two_versions):
    link = tmp_path / "link"
    link.symlink_to(half_plus_two_versions[123])
    spec = CanarySpec("hp2", {123: link})
    assert spec.versions[123] == Path(half_plus_two_versions[123]).resolve()


def test_tensorflow_model_server_preferred_when_on_path(tmp_path, monkeypatch):
    from servegate.serving.runners.process import default_server_command

    fake = tmp_path / "tensorflow_model_server"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert default_server_command("auto") == [str(fake)]
    assert default_server_command("bundled")[1:] == ["-m", "servegate.serving"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert default_server_command("auto")[1:] == ["-m", "servegate.serving"]
    with pytest.raises(ServingError, match="tensorflow_model_server is not on PATH"):
        default_server_command("tfs")
