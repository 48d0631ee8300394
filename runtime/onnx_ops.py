"""Count the op types of an ONNX file with the standard library alone.

ONNX Runtime does not expose a session's graph, and the ``onnx`` package is an
export-side dependency a device may not have. An ONNX file is a protobuf
``ModelProto``; only three fields are needed (``ModelProto.graph`` = 7,
``GraphProto.node`` = 1, ``NodeProto.op_type`` = 4), so a minimal reader of the
protobuf wire format suffices: every other field, weights included, is skipped
by its length without being decoded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

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
