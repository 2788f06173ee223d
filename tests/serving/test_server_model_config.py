"""ModelServerConfig parsing (text format, TensorFlow Serving's own example files) and flag parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from servegate.errors import ConfigError
from servegate.serving.server.flags import parse_flags
from servegate.serving.server.model_config import (
    VersionPolicy,
    load_model_config_file,
    parse_model_config_text,
    single_model,
)


def test_tf_servings_good_config_parses(tfs_testdata, tmp_path):
    text = (tfs_testdata / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", "/m/two").replace("${TEST_HALF_PLUS_THREE_DIR}", "/m/three")
    config = tmp_path / "good.config"
    config.write_text(text)
    models = load_model_config_file(config)
    assert [(m.name, m.base_path, m.policy, m.labels) for m in models] == [
        ("half_plus_two", Path("/m/two"), VersionPolicy("latest", 1), {}),
        ("half_plus_three", Path("/m/three"), VersionPolicy("latest", 1), {}),
    ]


def test_tf_servings_bad_config_is_a_config_error_naming_the_file(tfs_testdata):
    path = tfs_testdata / "bad_model_config.txt"
    with pytest.raises(ConfigError, match=rf"model config file {path}: not a text-format ModelServerConfig"):
        load_model_config_file(path)


def test_policies_and_labels():
    [model] = parse_model_config_text(
        'model_config_list { config { name: "m" base_path: "/b" model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 7 versions: 3 } } "
        'version_labels { key: "stable" value: 3 } version_labels { key: "canary" value: 7 } } }'
    )
    assert model.policy == VersionPolicy("specific", versions=(3, 7))
    assert model.labels == {"stable": 3, "canary": 7}
    assert model.policy.aspired({1, 3, 7, 9}) == {3, 7}
    assert VersionPolicy("latest", 2).aspired({1, 3, 7, 9}) == {7, 9}
    assert VersionPolicy("all").aspired({1, 3}) == {1, 3}
    assert VersionPolicy().aspired(set()) == set()


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected a model_config_list with at least one config"),
        ('model_config_list { config { base_path: "/b" } }', "config #1 field 'name': model name '' is not valid"),
        ('model_config_list { config { name: "m" } }', "config #1 (m): field 'base_path' is missing"),
        ('model_config_list { config { name: "m" base_path: "/b" model_platform: "pytorch" } }',
         "model_platform 'pytorch' is not supported"),
        ('model_config_list { config { name: "m" base_path: "/b" } config { name: "m" base_path: "/c" } }',
         "config #2: model name 'm' appears twice"),
        ('model_config_list { config { name: "m" base_path: "/b" model_version_policy { specific { } } } }',
         "model_version_policy specific lists no versions"),
        ('model_config_list { config { name: "../x" base_path: "/b" } }', "model name '../x' is not valid"),
    ],
)
def test_bad_configs_name_the_problem(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_model_config_text(text, "models.config")


def test_single_model_flags_and_defaults():
    flags = parse_flags(["--model_name=iris", "--model_base_path=/b", "--rest_api_port=8501"])
    assert (flags.grpc_port, flags.rest_api_port, flags.file_system_poll_wait_seconds) == (8500, 8501, 1.0)
    assert (flags.rest_api_bind_address, flags.grpc_bind_address) == ("127.0.0.1", "127.0.0.1")
    assert (flags.max_num_load_retries, flags.load_retry_interval_micros) == (5, 60_000_000)
    assert single_model(flags.model_name, flags.model_base_path)[0].base_path == Path("/b")


def test_bind_address_flags():
    flags = parse_flags(["--model_base_path=/b", "--bind_address=0.0.0.0", "--grpc_bind_address=127.0.0.1"])
    assert (flags.rest_api_bind_address, flags.grpc_bind_address) == ("0.0.0.0", "127.0.0.1")


def test_space_separated_flag_values_work_too():
    flags = parse_flags(["--model_base_path", "/b", "--port", "9000", "--file_system_poll_wait_seconds", "0.25"])
    assert (flags.grpc_port, flags.file_system_poll_wait_seconds) == (9000, 0.25)
