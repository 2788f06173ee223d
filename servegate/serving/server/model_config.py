"""Which models to serve, from flags or a text-format ``ModelServerConfig`` file.

The file is TensorFlow Serving's own format (``model_config_list { config {
name, base_path, model_platform, model_version_policy, version_labels } }``),
parsed with the protos shipped in ``tensorflow-serving-api``; no TensorFlow
import is needed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from servegate.errors import ConfigError
from servegate.model_names import MODEL_NAME_RULE, is_model_name



@dataclass(frozen=True)
class VersionPolicy:
    """TensorFlow Serving's ``ServableVersionPolicy``: which on-disk versions to serve.

    ``kind`` is ``latest`` (the ``num_versions`` highest), ``all`` or
    ``specific`` (exactly ``versions``, those that exist).
    """

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def aspired(self, on_disk: set[int]) -> set[int]:
        """The versions among ``on_disk`` that this policy wants loaded."""
        if self.kind == "all":
            return set(on_disk)
        if self.kind == "specific":
            return set(on_disk) & set(self.versions)
        return set(sorted(on_disk, reverse=True)[: self.num_versions])


@dataclass(frozen=True)
class ModelConfig:
    """One model to serve: its name, base path (numbered versions below it), policy and labels."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)
    logging: LoggingSettings | None = None


COLLECTOR_TYPES = ("tfrecord",)


@dataclass(frozen=True)
class LoggingSettings:
    """A model's ``logging_config``: where its request log goes and which share of requests it holds.

    ``collector`` is the ``log_collector_config.type``; ``tfrecord`` (the only
    one) writes TFRecord files of ``PredictionLog`` named after
    ``filename_prefix``.
    """

    collector: str
    filename_prefix: str
    sampling_rate: float


def single_model(name: str, base_path: str) -> list[ModelConfig]:
    """The config of ``--model_name``/``--model_base_path``: one model, ``latest`` policy."""
    _check_name(name, "--model_name")
    return [ModelConfig(name=name, base_path=Path(base_path))]


def _check_name(name: str, where: str) -> None:
    if not is_model_name(name):
        raise ConfigError(f"{where}: model name {name!r} is not valid (expected {MODEL_NAME_RULE})")


def parse_model_config_text(text: str, source: str = "<text>") -> list[ModelConfig]:
    """Parse a text-format ``ModelServerConfig``; errors name ``source`` and the field."""
    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise ConfigError(f"model config file {source}: not a text-format ModelServerConfig: {exc}") from exc
    if proto.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"model config file {source}: expected a model_config_list with at least one config")
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for index, cfg in enumerate(proto.model_config_list.config):
        where = f"model config file {source}, config #{index + 1}"
        _check_name(cfg.name, f"{where} field 'name'")
        if cfg.name in seen:
            raise ConfigError(f"{where}: model name {cfg.name!r} appears twice")
        seen.add(cfg.name)
        if not cfg.base_path:
            raise ConfigError(f"{where} ({cfg.name}): field 'base_path' is missing")
        if cfg.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"{where} ({cfg.name}): model_platform {cfg.model_platform!r} is not supported (expected 'tensorflow')"
            )
        models.append(
            ModelConfig(
                name=cfg.name,
                base_path=Path(cfg.base_path),
                policy=_policy(cfg.model_version_policy, f"{where} ({cfg.name})"),
                labels=dict(cfg.version_labels),
                logging=_logging(cfg, f"{where} ({cfg.name})") if cfg.HasField("logging_config") else None,
            )
        )
    if not models:
        raise ConfigError(f"model config file {source}: model_config_list has no config")
    return models


def _policy(proto, where: str) -> VersionPolicy:
    kind = proto.WhichOneof("policy_choice")
    if kind is None or kind == "latest":
        num = proto.latest.num_versions if kind == "latest" and proto.latest.num_versions else 1
        if num < 1:
            raise ConfigError(f"{where}: model_version_policy latest num_versions must be >= 1")
        return VersionPolicy("latest", num_versions=num)
    if kind == "all":
        return VersionPolicy("all")
    versions = tuple(sorted(set(proto.specific.versions)))
    if not versions:
        raise ConfigError(f"{where}: model_version_policy specific lists no versions")
    return VersionPolicy("specific", versions=versions)


def _logging(cfg, where: str) -> LoggingSettings | None:
    """The ``logging_config`` of one model; every field either applied or refused, none dropped."""
    proto = cfg.logging_config
    where = f"{where}: logging_config"
    if proto.HasField("custom_logging_config"):
        raise ConfigError(f"{where}.custom_logging_config is not supported (expected log_collector_config "
                          "and sampling_config only)")
    sampling = proto.sampling_config
    if sampling.per_task_sampling_configs or sampling.attributes:
        raise ConfigError(f"{where}.sampling_config: per_task_sampling_configs and attributes are not supported "
                          "(expected sampling_rate only)")
    rate = sampling.sampling_rate
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{where}.sampling_config.sampling_rate is {rate} (expected a number from 0 to 1)")
    collector = proto.log_collector_config.type
    if collector not in COLLECTOR_TYPES:
        raise ConfigError(f"{where}.log_collector_config.type {collector!r}: cannot find a log collector of "
                          f"that type (expected one of {', '.join(COLLECTOR_TYPES)})")
    prefix = proto.log_collector_config.filename_prefix
    if not prefix:
        raise ConfigError(f"{where}.log_collector_config.filename_prefix is missing (expected a path prefix "
                          "for the log files, e.g. /var/log/serving/mymodel)")
    return LoggingSettings(collector=collector, filename_prefix=prefix, sampling_rate=rate)


def load_model_config_file(path: Path) -> list[ModelConfig]:
    """Read and parse a ``--model_config_file``; a missing or unreadable file is a :class:`ConfigError`."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"model config file {path}: cannot be read: {exc.strerror or exc}") from exc
    return parse_model_config_text(text, str(path))
