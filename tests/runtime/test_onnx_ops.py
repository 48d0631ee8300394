"""The standard-library ONNX reader: op counts (agreement with ``onnx`` is tested in test_load), external data."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from runtime.errors import ModelLoadError
from runtime.backends.onnx_ops import onnx_op_counts


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


# -- external data: refused, never resolved against the working directory -----------------------
def _onnx_model(onnx: ModuleType, *, bias_in_a_subgraph: bool = False) -> Any:
    """pixels (N, 28, 28, 1) float -> Flatten -> MatMul W -> Add b -> Softmax; b optionally in an If branch."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(0, 0.1, (784, 10)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.arange(10, dtype=np.float32), "b")
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["mm"])]
    initializers = [weights]
    if bias_in_a_subgraph:  # b as a Constant inside an If branch: a tensor in a node attribute of a subgraph
        branch = helper.make_graph([helper.make_node("Constant", [], ["b_out"], value=bias)], "branch", [],
                                   [helper.make_tensor_value_info("b_out", TensorProto.FLOAT, [10])])
        initializers.append(numpy_helper.from_array(np.array(True), "cond"))
        nodes.append(helper.make_node("If", ["cond"], ["b"], then_branch=branch, else_branch=branch))
    else:
        initializers.append(bias)
    nodes += [helper.make_node("Add", ["mm", "b"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("in_a_subgraph", [False, True], ids=["initializer", "subgraph_constant"])
def test_a_model_with_external_data_is_refused_wherever_the_process_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_a_subgraph: bool
) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort

    import runtime
    from runtime.backends.onnx_ops import onnx_external_data

    model_dir, cwd = tmp_path / "model", tmp_path / "cwd"
    model_dir.mkdir()
    cwd.mkdir()
    whole = _onnx_model(onnx, bias_in_a_subgraph=in_a_subgraph)
    onnx.save_model(whole, model_dir / "whole.onnx")
    external = _onnx_model(onnx, bias_in_a_subgraph=in_a_subgraph)
    if in_a_subgraph:  # onnx.save_model externalizes initializers only; move the Constant's tensor by hand
        constant = external.graph.node[2].attribute[0].g.node[0].attribute[0].t
        onnx.external_data_helper.set_external_data(constant, location="bias.bin")
        constant.ClearField("raw_data")
        constant.ClearField("float_data")
        (cwd / "bias.bin").write_bytes(np.arange(10, dtype=np.float32).tobytes())
        onnx.save_model(external, model_dir / "external.onnx")
    else:
        onnx.save_model(external, model_dir / "external.onnx", save_as_external_data=True,
                        all_tensors_to_one_file=True, location="bias.bin", size_threshold=0)
        (cwd / "bias.bin").write_bytes((model_dir / "bias.bin").read_bytes())
    monkeypatch.chdir(cwd)
    data = (model_dir / "external.onnx").read_bytes()
    if not in_a_subgraph:  # the hazard: ONNX Runtime given the bytes reads bias.bin from the working directory
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [t.location for t in onnx_external_data(data)] == ["bias.bin"] * (1 if in_a_subgraph else 2)
    assert onnx_external_data((model_dir / "whole.onnx").read_bytes()) == []
    with pytest.raises(runtime.ModelLoadError, match=r"external.onnx: \d tensor\(s\) keep their data in other "
                       r"files \(e\.g\. .* in 'bias\.bin'\); ONNX external data is refused"):
        runtime.load(model_dir / "external.onnx")
    with runtime.load(model_dir / "whole.onnx") as model:  # the same graph in one file runs
        assert model.predict(np.zeros((2, 28, 28), np.uint8)).shape == (2, 10)
