"""Read what the runtime needs from an ONNX file with the standard library alone.

ONNX Runtime does not expose a session's graph, and the ``onnx`` package is an
export-side dependency a device may not have. An ONNX file is a protobuf
``ModelProto``; a minimal reader of the protobuf wire format suffices, since
every field not needed, weights included, is skipped by its length without
being decoded. Three questions are asked of it:

- ``onnx_op_counts``: the op types of the main graph (``ModelProto.graph`` = 7,
  ``GraphProto.node`` = 1, ``NodeProto.op_type`` = 4);
- ``onnx_opsets``: the opset per domain and the IR version (``runtime.artifacts.compat``);
- ``onnx_external_data``: the tensors whose bytes live in another file
  (``TensorProto.data_location`` = 14 is EXTERNAL, or ``external_data`` = 13 is
  set), anywhere a tensor may sit: initializers, sparse initializers, node
  attributes, subgraphs, functions and training info.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from runtime.artifacts.compat import ONNX_DOMAIN
from runtime.errors import ModelLoadError

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_MODEL_GRAPH, _GRAPH_NODE, _NODE_OP_TYPE = 7, 1, 4


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ModelLoadError("ONNX protobuf is truncated or malformed (bad varint)")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """Yield (field number, wire type, value) of one message; LEN values as sub-views."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
            if pos > len(buf):
                raise ModelLoadError("ONNX protobuf is truncated (fixed-size field past the end)")
        elif wire == _LEN:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ModelLoadError("ONNX protobuf is truncated (field longer than the file)")
            yield number, wire, buf[pos : pos + length]
            pos += length
        else:
            raise ModelLoadError(f"ONNX protobuf is malformed (wire type {wire} of field {number})")


def onnx_op_counts(data: bytes) -> dict[str, int]:
    """Op type -> count over the main graph's nodes (a Loop or If body is not expanded)."""
    counts: Counter[str] = Counter()
    for number, wire, graph in _fields(memoryview(data)):
        if number != _MODEL_GRAPH or wire != _LEN:
            continue
        assert isinstance(graph, memoryview)
        for gnumber, gwire, node in _fields(graph):
            if gnumber != _GRAPH_NODE or gwire != _LEN:
                continue
            assert isinstance(node, memoryview)
            for nnumber, nwire, value in _fields(node):
                if nnumber == _NODE_OP_TYPE and nwire == _LEN:
                    assert isinstance(value, memoryview)
                    try:
                        counts[bytes(value).decode("utf-8")] += 1
                    except UnicodeDecodeError as exc:
                        raise ModelLoadError("ONNX node has an op_type that is not UTF-8") from exc
    return dict(counts)


_MODEL_IR_VERSION, _MODEL_OPSET_IMPORT, _OPSET_DOMAIN, _OPSET_VERSION = 1, 8, 1, 2


def onnx_opsets(data: bytes) -> tuple[dict[str, int], int | None]:
    """The model's opset per domain (``ModelProto.opset_import``; the default domain, written "",
    as ``ONNX_DOMAIN``) and its IR version (None when absent): what decides which ONNX Runtime loads it."""
    opsets: dict[str, int] = {}
    ir_version = None
    for number, wire, value in _fields(memoryview(data)):
        if number == _MODEL_IR_VERSION and wire == _VARINT:
            assert isinstance(value, int)
            ir_version = value
        elif number == _MODEL_OPSET_IMPORT and wire == _LEN:
            assert isinstance(value, memoryview)
            domain, version = "", 0
            for onumber, owire, item in _fields(value):
                if onumber == _OPSET_DOMAIN and owire == _LEN:
                    assert isinstance(item, memoryview)
                    domain = bytes(item).decode("utf-8", errors="replace")
                elif onumber == _OPSET_VERSION and owire == _VARINT:
                    assert isinstance(item, int)
                    version = item
            domain = domain or ONNX_DOMAIN
            opsets[domain] = max(version, opsets.get(domain, 0))
    return opsets, ir_version


# Where a TensorProto can sit: message kind -> {field number: kind of the sub-message}.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},  # graph, training_info, functions
    "training": {1: "graph", 2: "graph"},  # initialization, algorithm
    "graph": {1: "node", 5: "tensor", 15: "sparse"},  # node, initializer, sparse_initializer
    "function": {7: "node", 11: "attribute"},  # node, attribute_proto
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},  # values, indices
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1
_MAX_NESTING = 64  # subgraphs inside subgraphs; real models nest a few levels


class ExternalTensor(NamedTuple):
    """A tensor whose data an ONNX file keeps in another file."""

    name: str
    location: str  # the file it names ("" if none)


def onnx_external_data(data: bytes) -> list[ExternalTensor]:
    """Every tensor of the model whose data lies outside the file (empty for a self-contained model)."""
    found = []
    stack: list[tuple[str, memoryview, int]] = [("model", memoryview(data), 0)]
    while stack:
        kind, buf, depth = stack.pop()
        if depth > _MAX_NESTING:
            raise ModelLoadError(f"ONNX graphs are nested more than {_MAX_NESTING} deep")
        if kind == "tensor":
            tensor = _external_tensor(buf)
            if tensor is not None:
                found.append(tensor)
            continue
        children = _CHILDREN[kind]
        for number, wire, value in _fields(buf):
            if wire == _LEN and number in children:
                assert isinstance(value, memoryview)
                stack.append((children[number], value, depth + 1))
    return found


def _external_tensor(buf: memoryview) -> ExternalTensor | None:
    name, location, external = "", "", False
    for number, wire, value in _fields(buf):
        if number == _TENSOR_DATA_LOCATION and wire == _VARINT and value == _EXTERNAL:
            external = True
        elif number == _TENSOR_NAME and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", "replace")
        elif number == _TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
            external = True
            entry = {key: bytes(text).decode("utf-8", "replace")
                     for key, _, text in _fields(value) if isinstance(text, memoryview)}
            if entry.get(1) == "location":
                location = entry.get(2, "")
    return ExternalTensor(name, location) if external else None
