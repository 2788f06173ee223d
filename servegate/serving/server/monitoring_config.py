"""``--monitoring_config_file``: TensorFlow Serving's text-format ``MonitoringConfig``.

::

    prometheus_config {
      enable: true
      path: "/monitoring/prometheus/metrics"
    }

``tensorflow-serving-api`` does not ship ``monitoring_config_pb2``, so the two
messages are declared here from TensorFlow Serving's
``tensorflow_serving/config/monitoring_config.proto`` (same package, names and
field numbers) in a private descriptor pool; protobuf's own ``text_format``
then parses the file exactly as ``tensorflow_model_server`` does (unknown
fields and bad values are errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from servegate.errors import ConfigError

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath

_F = descriptor_pb2.FieldDescriptorProto


@dataclass(frozen=True)
class MonitoringSettings:
    """What the config asks for: a Prometheus page at ``path`` on the REST port, or nothing."""

    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_PROMETHEUS_PATH


@lru_cache(maxsize=1)
def monitoring_config_class():
    """The ``tensorflow.serving.MonitoringConfig`` message class."""
    try:  # a later tensorflow-serving-api may ship it
        from tensorflow_serving.config import monitoring_config_pb2

        return monitoring_config_pb2.MonitoringConfig
    except ImportError:
        pass
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                         type_name=".tensorflow.serving.PrometheusConfig")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


def parse_monitoring_config_text(text: str, source: str = "<text>") -> MonitoringSettings:
    """Parse a text-format ``MonitoringConfig``; errors name ``source`` and the field."""
    config = monitoring_config_class()()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(
            f"monitoring config file {source}: not a text-format MonitoringConfig "
            f"(expected e.g. prometheus_config {{ enable: true path: \"{DEFAULT_PROMETHEUS_PATH}\" }}): {exc}"
        ) from exc
    prometheus = config.prometheus_config
    path = prometheus.path or DEFAULT_PROMETHEUS_PATH
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise ConfigError(
            f"monitoring config file {source}: field 'prometheus_config.path' is {prometheus.path!r}: "
            "expected a URL path starting with '/' and without spaces"
        )
    if path.startswith("/v1/"):
        raise ConfigError(
            f"monitoring config file {source}: field 'prometheus_config.path' is {prometheus.path!r}: "
            "expected a path outside the model API's /v1/"
        )
    return MonitoringSettings(prometheus_enabled=prometheus.enable, prometheus_path=path)


def load_monitoring_config_file(path: Path) -> MonitoringSettings:
    """Read and parse ``--monitoring_config_file``; a missing or unreadable file is a :class:`ConfigError`."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"monitoring config file {path}: cannot be read: {reason}") from exc
    return parse_monitoring_config_text(text, str(path))


def prometheus_config_text(path: str = DEFAULT_PROMETHEUS_PATH) -> str:
    """A ``MonitoringConfig`` turning the Prometheus page on at ``path`` (for ``servegate serve --metrics``)."""
    return f'prometheus_config {{\n  enable: true\n  path: "{path}"\n}}\n'


def write_prometheus_config(path: Path, prometheus_path: str = DEFAULT_PROMETHEUS_PATH) -> Path:
    """Write :func:`prometheus_config_text` to ``path`` (for ``--monitoring_config_file``); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prometheus_config_text(prometheus_path))
    return path
