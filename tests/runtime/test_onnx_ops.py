"""The standard-library ONNX op counter (agreement with ``onnx`` is tested in test_load)."""

from __future__ import annotations

import pytest

from runtime.errors import ModelLoadError
from runtime.onnx_ops import onnx_op_counts


def _len_field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128  # one-byte varint length keeps the fixture readable
    return bytes([number << 3 | 2, len(payload)]) + payload


def _node(op_type: str) -> bytes:
    """GraphProto.node (1) holding NodeProto.input (1) and NodeProto.op_type (4)."""
    return _len_field(1, _len_field(1, b"in") + _len_field(4, op_type.encode()))


def test_counts_hand_built_model() -> None:
    graph = _node("Conv") + _node("Relu") + _node("Conv") + _len_field(2, b"graph-name")
    model = b"\x08\x09" + _len_field(7, graph) + b"\x41" + bytes(8)  # ir_version, graph, a fixed64 field
    assert onnx_op_counts(model) == {"Conv": 2, "Relu": 1}


def test_model_without_graph_has_no_ops() -> None:
    assert onnx_op_counts(b"\x08\x09") == {}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x08\xff", "bad varint"),
        (b"\x3a\x10abc", "field longer than the file"),
        (b"\x41\x00\x00", "fixed-size field past the end"),
        (b"\x0b", "wire type 3"),
    ],
)
def test_malformed_protobuf(data: bytes, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match):
        onnx_op_counts(data)
