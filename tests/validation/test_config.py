"""The validation config: defaults, YAML and TOML files, and errors that name the field and the file."""

from __future__ import annotations

import pytest

from servegate.errors import ConfigError
from servegate.validation import DeployConfig, ValidationConfigError, load_config


def test_no_config_gives_the_documented_defaults():
    config = load_config(None)
    assert config == DeployConfig()
    assert config.batch_size == 256 and config.concurrency == 4
    assert config.parity.min_fraction == 0.99 and config.service_level.max_p95_ms == 1000.0
    assert config.quality.enabled is None  # on when the reference has labels


def test_yaml_and_toml_files_are_read(tmp_path):
    yaml_file = tmp_path / "v.yaml"
    yaml_file.write_text("batch_size: 32\nparity:\n  atol: 0.001\nservice_level:\n  max_p99_ms: 250\n")
    toml_file = tmp_path / "v.toml"
    toml_file.write_text("concurrency = 2\n[quality]\nmax_mae = 0.5\n")
    y = load_config(yaml_file)
    t = load_config(toml_file)
    assert (y.batch_size, y.parity.atol, y.service_level.max_p99_ms) == (32, 0.001, 250.0)
    assert (t.concurrency, t.quality.max_mae) == (2, 0.5)


def test_an_empty_yaml_file_means_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == DeployConfig()


@pytest.mark.parametrize("text, expected", [
    ("batch_size: many\n", "field 'batch_size'"),
    ("parity:\n  atol: -1\n", "field 'parity.atol'"),
    ("sanity:\n  colour: red\n", "unknown field 'sanity.colour'"),
    ("bogus: 1\n", "unknown field 'bogus'"),
    ("sanity:\n  min_value: 2\n  max_value: 1\n", "min_value 2.0 is greater than max_value 1.0"),
    ("task: ranking\n", "field 'task'"),
])
def test_bad_fields_are_named_with_the_file(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValidationConfigError) as info:
        load_config(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("name, text, expected", [
    ("broken.yaml", "batch_size: [1,\n", "does not parse as YAML"),
    ("broken.toml", "batch_size = = 3\n", "does not parse as TOML"),
    ("config.ini", "[x]\n", "unknown format '.ini'"),
    ("list.yaml", "- 1\n- 2\n", "expected a mapping of fields"),
])
def test_unparseable_files_are_errors(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValidationConfigError, match=expected):
        load_config(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValidationConfigError, match=r"nope\.yaml: no such file"):
        load_config(tmp_path / "nope.yaml")


def test_the_readme_documents_every_field_with_its_default():
    """The README's config block parses, and equals the defaults: docs and code cannot drift apart."""
    import re

    import yaml

    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"## Validation config.*?```yaml\n(.*?)```", text, re.S).group(1)
    assert load_config(yaml.safe_load(block)) == DeployConfig()
    documented = yaml.safe_load(block)
    assert set(documented) == set(DeployConfig.model_fields)
    for name, field in DeployConfig.model_fields.items():
        section = getattr(field.annotation, "model_fields", None)
        if section is not None:
            assert set(documented[name]) == set(section), name


@pytest.mark.parametrize("data, expected", [
    ({"warmup": {"requests": 0}}, "field 'warmup.requests'"),
    ({"warmup": {"requests": 1001}}, "field 'warmup.requests'"),
    ({"require": ["quality", "speed"]}, "field 'require.1'"),
    ({"output": "a", "outputs": {"b": {}}}, "set 'output' (one output) or 'outputs'"),
    ({"outputs": {"a": {"task": "ranking"}}}, "field 'outputs.a.task'"),
    ({"distribution": {"max_ks": 0}}, "field 'distribution.max_ks'"),
    ({"service_level": {"concurrency": 0}}, "field 'service_level.concurrency'"),
    ({"service_level": {"budget_s": 0}}, "field 'service_level.budget_s'"),
])
def test_new_fields_are_checked(data, expected):
    with pytest.raises(ValidationConfigError) as info:
        load_config(data)
    assert expected in str(info.value)


def test_new_fields_have_their_documented_defaults():
    config = load_config(None)
    assert (config.warmup.enabled, config.warmup.requests) == (True, 100)
    assert config.distribution.max_ks == 0.35 and config.service_level.max_p95_ratio == 1.5
    assert config.service_level.requests == 200 and config.service_level.min_requests == 50
    assert config.service_level.budget_s == config.service_level.load_budget_s() == 2.0
    assert config.require == [] and config.data_docs is False


@pytest.mark.parametrize("service_level, budget", [
    ({}, 2.0),
    ({"min_requests": 10}, 2.0),
    ({"requests": 500}, None),  # a configured count is applied exactly
    ({"duration_s": 10}, None),  # a configured duration too
    ({"requests": 500, "budget_s": 3}, 3.0),
    ({"budget_s": None}, None),
])
def test_the_load_budget_applies_unless_a_count_or_duration_is_configured(service_level, budget):
    assert load_config({"service_level": service_level}).service_level.load_budget_s() == budget
