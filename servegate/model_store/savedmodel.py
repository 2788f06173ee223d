"""Is this directory a complete SavedModel? Answered without importing TensorFlow.

Importing TensorFlow costs seconds per process, and the store runs in many
short processes (the command line, the crash tests' children), so
``saved_model.pb`` is read with :mod:`google.protobuf` alone: a minimal
message schema is built at runtime with just the fields the check needs
(field numbers as in ``tensorflow/core/protobuf/saved_model.proto`` and
``meta_graph.proto``)::

    SavedModel.meta_graphs = 2                       repeated MetaGraphDef
    MetaGraphDef.meta_info_def = 1                   MetaInfoDef (tags = 4)
    MetaGraphDef.saver_def = 3                       kept as bytes (presence only)
    MetaGraphDef.signature_def = 5                   map<string, SignatureDef>
    SignatureDef.inputs = 1, outputs = 2             map<string, TensorInfo>
    SignatureDef.method_name = 3
    TensorInfo.name = 1, dtype = 2, tensor_shape = 3

Everything else (the graph, the object graph, assets) is skipped as unknown
fields. The checks, in order: the directory exists and is not empty;
``saved_model.pb`` (or ``saved_model.pbtxt``) is there and parses; it has a
MetaGraph with the serving tag set (``serve``); that MetaGraph lists a
``serving_default`` signature (configurable); when ``variables/`` holds
anything, ``variables/variables.index`` and every ``variables.data-NNNNN-of-MMMMM``
shard are there.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory, text_format

from servegate.model_store.errors import NotASavedModel

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
VARIABLES_DIR = "variables"
VARIABLES_INDEX = "variables.index"
DEFAULT_SIGNATURE = "serving_default"
SERVING_TAGS = ("serve",)

_SHARD_RE = re.compile(r"variables\.data-(\d+)-of-(\d+)")

# tensorflow/core/framework/types.proto
DTYPES = {
    0: "DT_INVALID", 1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16",
    6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL", 11: "DT_QINT8",
    12: "DT_QUINT8", 13: "DT_QINT32", 14: "DT_BFLOAT16", 15: "DT_QINT16", 16: "DT_QUINT16",
    17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF", 20: "DT_RESOURCE", 21: "DT_VARIANT",
    22: "DT_UINT32", 23: "DT_UINT64", 24: "DT_FLOAT8_E5M2", 25: "DT_FLOAT8_E4M3FN",
    29: "DT_INT4", 30: "DT_UINT4",
}


# --------------------------------------------------------------------------- the minimal schema

_F = descriptor_pb2.FieldDescriptorProto
_PKG = "servegate.minimal_saved_model"
_PKG_PREFIX = f".{_PKG}."


def _field(msg, name: str, number: int, ftype: int, *, repeated: bool = False, type_name: str | None = None):
    f = msg.field.add()
    f.name, f.number, f.type = name, number, ftype
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name
    return f


def _map_field(msg, name: str, number: int, value_type: str) -> None:
    entry = msg.nested_type.add()
    entry.name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=value_type)
    _field(msg, name, number, _F.TYPE_MESSAGE, repeated=True, type_name=f"{_PKG_PREFIX}{msg.name}.{entry.name}")


def _build_classes() -> dict[str, type]:
    fdp = descriptor_pb2.FileDescriptorProto(name="servegate_minimal_saved_model.proto", package=_PKG,
                                             syntax="proto3")
    shape = fdp.message_type.add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    _field(dim, "size", 1, _F.TYPE_INT64)
    _field(dim, "name", 2, _F.TYPE_STRING)
    _field(shape, "dim", 2, _F.TYPE_MESSAGE, repeated=True, type_name=f"{_PKG_PREFIX}TensorShapeProto.Dim")
    _field(shape, "unknown_rank", 3, _F.TYPE_BOOL)

    info = fdp.message_type.add(name="TensorInfo")
    _field(info, "name", 1, _F.TYPE_STRING)
    _field(info, "dtype", 2, _F.TYPE_INT32)  # an enum on the wire is a varint, as int32 is
    _field(info, "tensor_shape", 3, _F.TYPE_MESSAGE, type_name=f"{_PKG_PREFIX}TensorShapeProto")

    sig = fdp.message_type.add(name="SignatureDef")
    _map_field(sig, "inputs", 1, f"{_PKG_PREFIX}TensorInfo")
    _map_field(sig, "outputs", 2, f"{_PKG_PREFIX}TensorInfo")
    _field(sig, "method_name", 3, _F.TYPE_STRING)

    meta_info = fdp.message_type.add(name="MetaInfoDef")
    _field(meta_info, "meta_graph_version", 1, _F.TYPE_STRING)
    _field(meta_info, "tags", 4, _F.TYPE_STRING, repeated=True)
    _field(meta_info, "tensorflow_version", 5, _F.TYPE_STRING)

    meta = fdp.message_type.add(name="MetaGraphDef")
    _field(meta, "meta_info_def", 1, _F.TYPE_MESSAGE, type_name=f"{_PKG_PREFIX}MetaInfoDef")
    _field(meta, "saver_def", 3, _F.TYPE_BYTES)  # a message on the wire; presence is all we need
    _map_field(meta, "signature_def", 5, f"{_PKG_PREFIX}SignatureDef")

    saved = fdp.message_type.add(name="SavedModel")
    _field(saved, "saved_model_schema_version", 1, _F.TYPE_INT64)
    _field(saved, "meta_graphs", 2, _F.TYPE_MESSAGE, repeated=True, type_name=f"{_PKG_PREFIX}MetaGraphDef")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.{n}"))
            for n in ("SavedModel", "MetaGraphDef", "SignatureDef")}


_CLASSES: dict[str, type] | None = None


def _classes() -> dict[str, type]:
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _build_classes()
    return _CLASSES


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TensorSpec:
    name: str            # the graph tensor, e.g. "serving_default_x:0"
    dtype: str           # e.g. "DT_FLOAT"
    shape: list[int] | None  # -1 for an unknown dimension; None for unknown rank


@dataclass(frozen=True)
class SignatureInfo:
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


@dataclass(frozen=True)
class SavedModelInfo:
    path: str
    tag_sets: list[list[str]]
    signatures: dict[str, SignatureInfo] = field(default_factory=dict)  # of the serving MetaGraph
    has_variables: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _spec(info) -> TensorSpec:
    shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
    return TensorSpec(name=info.name, dtype=DTYPES.get(info.dtype, f"DT_{info.dtype}"), shape=shape)


def _listing(entries: list[str], limit: int = 8) -> str:
    if not entries:
        return "nothing"
    shown = ", ".join(entries[:limit])
    return shown + (f", ... ({len(entries)} entries)" if len(entries) > limit else "")


# --------------------------------------------------------------------------- the check


def parse_saved_model(path: str | os.PathLike[str]):
    """The minimal ``SavedModel`` message of ``path/saved_model.pb[txt]`` (raises :class:`NotASavedModel`)."""
    path = Path(path)
    pb, pbtxt = path / SAVED_MODEL_PB, path / SAVED_MODEL_PBTXT
    msg = _classes()["SavedModel"]()
    try:
        if pb.is_file():
            data = pb.read_bytes()
            if not data:
                raise NotASavedModel(f"{pb} is empty; expected a serialized SavedModel protobuf")
            msg.ParseFromString(data)
        elif pbtxt.is_file():
            text_format.Parse(pbtxt.read_text(), msg, allow_unknown_field=True, allow_unknown_extension=True)
        else:
            raise NotASavedModel(
                f"{path} has no {SAVED_MODEL_PB}; expected a SavedModel directory "
                f"(found: {_listing(sorted(os.listdir(path)))})")
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
        raise NotASavedModel(f"{pb if pb.is_file() else pbtxt} cannot be parsed as a SavedModel protobuf: "
                             f"{exc or type(exc).__name__}") from None
    except OSError as exc:
        raise NotASavedModel(f"cannot read the SavedModel in {path}: {exc}") from None
    return msg


def check_savedmodel(path: str | os.PathLike[str], *, required_signature: str | None = DEFAULT_SIGNATURE,
                     tags: tuple[str, ...] | None = SERVING_TAGS) -> SavedModelInfo:
    """Check that ``path`` is a complete SavedModel TF Serving can load; return what it holds.

    Raises :class:`NotASavedModel` naming the path and what is missing.
    ``tags=None`` accepts any MetaGraph (the first); ``required_signature=None``
    accepts any signature listing, even an empty one.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise NotASavedModel(f"SavedModel directory {path} does not exist")
    if not path.is_dir():
        raise NotASavedModel(f"{path} is not a directory; expected a SavedModel directory "
                             f"(with {SAVED_MODEL_PB} and {VARIABLES_DIR}/)")
    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        raise NotASavedModel(f"cannot list SavedModel directory {path}: {exc}") from None
    if not entries:
        raise NotASavedModel(f"SavedModel directory {path} is empty; expected {SAVED_MODEL_PB} "
                             f"and {VARIABLES_DIR}/")

    saved = parse_saved_model(path)
    if not saved.meta_graphs:
        raise NotASavedModel(f"{path / SAVED_MODEL_PB} holds no MetaGraph; expected at least one "
                             f"(tagged {'/'.join(tags or SERVING_TAGS)})")
    tag_sets = [list(mg.meta_info_def.tags) for mg in saved.meta_graphs]
    if tags is None:
        meta_graph = saved.meta_graphs[0]
    else:
        matching = [mg for mg in saved.meta_graphs if set(mg.meta_info_def.tags) == set(tags)]
        if not matching:
            raise NotASavedModel(f"{path / SAVED_MODEL_PB} has no MetaGraph tagged {list(tags)} "
                                 f"(TF Serving's default); found tag sets {tag_sets}")
        meta_graph = matching[0]

    signatures = {
        name: SignatureInfo(
            method_name=sig.method_name,
            inputs={k: _spec(v) for k, v in sorted(sig.inputs.items())},
            outputs={k: _spec(v) for k, v in sorted(sig.outputs.items())},
        )
        for name, sig in sorted(meta_graph.signature_def.items())
    }
    if required_signature is not None and required_signature not in signatures:
        raise NotASavedModel(f"{path / SAVED_MODEL_PB} has no {required_signature!r} signature; "
                             f"found signatures {sorted(signatures) or 'none'}")

    has_variables = _check_variables(path)
    return SavedModelInfo(path=str(path), tag_sets=tag_sets, signatures=signatures, has_variables=has_variables)


def _check_variables(path: Path) -> bool:
    var_dir = path / VARIABLES_DIR
    if not os.path.lexists(var_dir):
        return False  # TF's loader accepts a SavedModel without variables
    if not var_dir.is_dir():
        raise NotASavedModel(f"{var_dir} is not a directory; expected the SavedModel's variables directory")
    names = sorted(os.listdir(var_dir))
    if not names:
        return False
    if VARIABLES_INDEX not in names or not (var_dir / VARIABLES_INDEX).is_file():
        raise NotASavedModel(f"{var_dir} has no {VARIABLES_INDEX}; expected the variables index beside "
                             f"the data shards (found: {_listing(names)})")
    shards = [m for m in (_SHARD_RE.fullmatch(n) for n in names) if m]
    if not shards:
        raise NotASavedModel(f"{var_dir} has {VARIABLES_INDEX} but no variables.data-NNNNN-of-MMMMM shard")
    totals = {int(m[2]) for m in shards}
    if len(totals) != 1:
        raise NotASavedModel(f"{var_dir} mixes data shards of different checkpoints "
                             f"({', '.join(m[0] for m in shards)})")
    total = totals.pop()
    present = {int(m[1]) for m in shards}
    missing = [i for i in range(total) if i not in present]
    if missing:
        width = len(shards[0][1])
        shown = ", ".join(f"variables.data-{i:0{width}d}-of-{shards[0][2]}" for i in missing[:5])
        raise NotASavedModel(f"{var_dir} is missing variables data shard(s) {shown}")
    return True


def read_signatures(path: str | os.PathLike[str], *, tags: tuple[str, ...] | None = SERVING_TAGS
                    ) -> dict[str, SignatureInfo]:
    """The signatures of the serving MetaGraph of a SavedModel (no TensorFlow import)."""
    return check_savedmodel(path, required_signature=None, tags=tags).signatures
