"""ONNX quantization: the calibration methods ONNX Runtime offers, and a precision per stage.

One float ONNX file of a small model (built from a seed), quantized several ways
with ONNX Runtime: each calibration method gives a file the runtime runs; a
float32 stage keeps its nodes out of Q/DQ, an int16x8 stage gets 16-bit Q/DQ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import runtime
from cllnn_edge.config import ModelConfig
from cllnn_edge.model import build_model
from cllnn_edge.preprocessing import fit_standardizer
from export.errors import ConversionError
from export.formats.isolate import Conversion
from export.formats.onnx import ORT_CALIBRATION, node_stages, quantize_onnx, to_onnx_float, to_onnx_recipe
from export.formats.precision import MOVING_AVERAGE, Recipe
from export.graph.unroll import unroll

SMALL = ModelConfig(conv_filters=(4, 8, 16), reservoir_dim=32, lstm_units=8)
QDQ = ("QuantizeLinear", "DequantizeLinear")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    from cllnn_edge.data import load_splits

    return load_splits("embedded").train.x[:100]


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray) -> dict[str, Path]:
    """The unrolled small model as a SavedModel and as float ONNX (its conversion takes ~15 s)."""
    root = tmp_path_factory.mktemp("onnx_quantize")
    model = unroll(build_model(SMALL, fit_standardizer(images))).model
    model.export(str(root / "saved_model"), verbose=False)
    to_onnx_float(root / "saved_model", root / "float.onnx", Conversion(calibration=None, opset=18, per_channel=True))
    return {"saved_model": root / "saved_model", "float": root / "float.onnx", "root": root}


def _conversion(images: np.ndarray, method: str = "minmax", recipe: str | None = None) -> Conversion:
    return Conversion(calibration=images, opset=18, per_channel=True, calibration_method=method,
                      recipe=None if recipe is None else Recipe.parse(recipe))


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in model.graph.node for output in node.output}


def _zero_point_type(model: onnx.ModelProto, node: onnx.NodeProto) -> int:
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    return initializers[node.input[2]].data_type


@pytest.mark.parametrize("method", ["mean", "", MOVING_AVERAGE])
def test_a_method_onnx_runtime_lacks_is_refused_by_name(tmp_path: Path, method: str) -> None:
    with pytest.raises(ConversionError, match="minmax, entropy, percentile, distribution"):
        quantize_onnx(tmp_path / "missing.onnx", _conversion(np.zeros((1, 28, 28), np.uint8), method),
                      tmp_path / "out.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("method", list(ORT_CALIBRATION))
def test_each_calibration_method_gives_a_file_the_runtime_runs(
    float_onnx: dict[str, Path], images: np.ndarray, method: str
) -> None:
    out = float_onnx["root"] / f"int8_{method}.onnx"
    quantize_onnx(float_onnx["float"], _conversion(images, method), out)
    with runtime.load(out) as model:
        probs = model.predict(images[:20])
    assert images.dtype == np.uint8
    assert probs.shape == (20, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-2)
    assert sum(node.op_type == "QuantizeLinear" for node in onnx.load(out).graph.node) > 10


@pytest.mark.slow
def test_an_all_int8_recipe_is_the_int8_file(float_onnx: dict[str, Path], images: np.ndarray) -> None:
    plain, recipe = float_onnx["root"] / "plain.onnx", float_onnx["root"] / "all_int8.onnx"
    quantize_onnx(float_onnx["float"], _conversion(images), plain)
    quantize_onnx(float_onnx["float"], _conversion(images, recipe="cnn=int8"), recipe)
    assert plain.read_bytes() == recipe.read_bytes()


@pytest.mark.slow
def test_every_node_has_a_stage(float_onnx: dict[str, Path]) -> None:
    graph = onnx.load(float_onnx["float"]).graph
    stages = node_stages(graph)
    assert set(stages.values()) == {"cnn", "reservoir", "lstm", "head"}
    # tf2onnx's own Transpose (NCHW -> NHWC before the flatten) is named after no layer
    (transpose,) = [n for n in graph.node if n.op_type == "Transpose"]
    assert stages[transpose.name] == "cnn"


@pytest.mark.slow
def test_a_float32_cnn_keeps_its_convolutions_out_of_qdq(float_onnx: dict[str, Path], images: np.ndarray) -> None:
    out = float_onnx["root"] / "float_cnn.onnx"
    quantize_onnx(float_onnx["float"], _conversion(images, recipe="cnn=float32"), out)
    model = onnx.load(out)
    producers = _producers(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3 and any("conv1" in n.name for n in convs)
    for conv in convs:
        assert not [name for name in conv.input if name in producers and producers[name].op_type in QDQ], conv.name
    # the reservoir reads the CNN's features through uint8 Q/DQ
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and "reservoir_in" in n.name]
    assert matmuls and producers[matmuls[0].input[0]].op_type == "DequantizeLinear"


@pytest.mark.slow
def test_an_int16x8_reservoir_has_16_bit_qdq(float_onnx: dict[str, Path], images: np.ndarray) -> None:
    out = float_onnx["root"] / "mixed.onnx"
    to_onnx_recipe(float_onnx["saved_model"], out, _conversion(images, recipe="reservoir=int16x8"))
    model = onnx.load(out)
    qdq = [n for n in model.graph.node if n.op_type in QDQ and "ReadVariableOp" not in n.input[0]]  # activations
    converted = [n for n in qdq if "_convert_" in n.name]
    reservoir = [n for n in qdq if "reservoir_" in n.input[0] and n not in converted]
    assert reservoir
    assert {_zero_point_type(model, n) for n in reservoir} == {onnx.TensorProto.INT16}
    # the other stages keep uint8 activations; the LSTM reads the reservoir's state converted to uint8
    lstm = [n for n in qdq if "lstm_" in n.input[0]]
    assert lstm and {_zero_point_type(model, n) for n in lstm} == {onnx.TensorProto.UINT8}
    assert converted and {_zero_point_type(model, n) for n in converted} == {onnx.TensorProto.UINT8}
    # ONNX Runtime raises the model to opset 21, where QuantizeLinear takes int16 (no contrib ops)
    assert {o.domain: o.version for o in model.opset_import}[""] == 21
    assert not [n for n in qdq if n.domain]
    with runtime.load(out) as loaded:
        probs = loaded.predict(images[:20])
    assert probs.shape == (20, 10) and probs.dtype == np.float32


@pytest.mark.slow
def test_an_int16x8_cnn_keeps_the_standardisers_constants_in_16_bits(
    float_onnx: dict[str, Path], images: np.ndarray
) -> None:
    """The per-column mean and 1 / std span ~0.01 .. ~80: as 8-bit weights they moved the demo
    model's probabilities by 0.29; a kernel's weights (Conv, MatMul) stay int8."""
    out = float_onnx["root"] / "cnn16.onnx"
    to_onnx_recipe(float_onnx["saved_model"], out, _conversion(images, recipe="cnn=int16x8"))
    model = onnx.load(out)
    producers = _producers(model)
    standardiser = [n for n in model.graph.node if n.op_type in ("Sub", "Mul") and "standardize" in n.name]
    assert standardiser
    constants = [producers[i] for n in standardiser for i in n.input
                 if i in producers and producers[i].op_type == "DequantizeLinear"
                 and producers[i].input[0] in {t.name for t in model.graph.initializer}]
    assert constants and {_zero_point_type(model, n) for n in constants} == {onnx.TensorProto.INT16}
    conv_weights = [producers[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]
    assert conv_weights and {_zero_point_type(model, n) for n in conv_weights} == {onnx.TensorProto.INT8}
