"""The reference data as the run's evaluation dataset (MLflow's ``mlflow.data`` model).

MLflow 3 shows a run's datasets in the runs table ("Dataset" column) and on the
run page, each with its context; the reference a version was judged on is the
run's ``evaluation`` dataset. The file itself is not copied: the dataset names
its source (the file's URI), a digest, its columns as an MLflow schema, and a
profile (rows, bytes, format, and ``content_sha256``: the bytes' digest, equal
for two runs judged on the same data wherever the file was).

MLflow keeps one dataset record per experiment, name and digest, and a run
logging a dataset whose name and digest are known gets the earlier record,
source included. So the digest covers the file's location as well as its
bytes: the same bytes at another path (a CI job's fresh checkout) are another
dataset, whose source is that path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger("servegate.tracking")

EVALUATION = "evaluation"
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256."""
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def dataset_digest(content_digest: str, source_uri: str) -> str:
    """The dataset record's digest: the bytes' digest and the location (see the module docstring)."""
    return hashlib.sha256(f"{content_digest}\0{source_uri}".encode()).hexdigest()[:16]


def _mlflow_type(arrow_type) -> Any:
    """The MLflow column type of an Arrow type (lists become MLflow arrays); None when it has none."""
    import pyarrow as pa
    from mlflow.types.schema import Array, DataType

    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        inner = _mlflow_type(arrow_type.value_type)
        return None if inner is None else Array(inner)
    checks = ((pa.types.is_boolean, DataType.boolean), (pa.types.is_floating, DataType.double),
              (pa.types.is_integer, DataType.long), (pa.types.is_string, DataType.string),
              (pa.types.is_large_string, DataType.string), (pa.types.is_binary, DataType.binary),
              (pa.types.is_timestamp, DataType.datetime))
    return next((dtype for test, dtype in checks if test(arrow_type)), None)


def _schema_and_format(path: Path) -> tuple[Any, str | None]:
    """The MLflow schema of the reference's columns and its format; (None, None) when it cannot be read.

    Reads only what the format's header or first block holds (a Parquet footer,
    the first CSV/JSON lines), never the whole file.
    """
    try:
        from mlflow.types.schema import ColSpec, Schema

        from servegate.validation.reference_io import detect_format, read_schema

        fmt = detect_format(path)
        columns = [(field.name, _mlflow_type(field.type)) for field in read_schema(path, fmt)]
        return Schema([ColSpec(dtype, name) for name, dtype in columns if dtype is not None]), fmt
    except Exception as exc:  # a dataset without a schema is still a dataset
        log.info("reference %s: no schema for MLflow's dataset record: %s", path, exc)
        return None, None


def evaluation_input(path: Path, rows: int | None = None, context: str = EVALUATION):
    """The :class:`mlflow.entities.DatasetInput` for the reference file (context ``evaluation``), or another
    file the validation read (the shadow check's sample of recorded traffic: context ``shadow``)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    path = Path(path).resolve()
    schema, fmt = _schema_and_format(path)
    if rows is None and fmt == "parquet":
        from servegate.validation.reference_io import parquet_rows

        rows = parquet_rows(path)
    with warnings.catch_warnings():
        # MLflow registers its local-file source class twice and warns that a file:// URI
        # "can be interpreted in multiple ways" (both are LocalArtifactDatasetSource): noise.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(path.as_uri())
    content = file_digest(path)
    meta = MetaDataset(source, name=path.name, digest=dataset_digest(content, path.as_uri()),
                       schema=schema)._to_mlflow_entity()
    profile = {"num_rows": rows, "num_bytes": path.stat().st_size, "format": fmt, "content_sha256": content}
    dataset = Dataset(name=meta.name, digest=meta.digest, source_type=meta.source_type, source=meta.source,
                      schema=meta.schema, profile=json.dumps({k: v for k, v in profile.items() if v is not None}))
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
