"""The compute floor: MAC counts against hand-computed layer shapes, the peak probe, op profiles.

The tiny model (depthwise 3x3 -> conv 3x3 -> dense -> sigmoid on 8x8x2 inputs,
dynamic batch) is built once per module from a seed and converted to float32
and full-int8 TFLite and to ONNX, so every count below is known by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import floor, macs, peak, profiling
from runtime.errors import ModelLoadError

# The int8 conversions warn that an int8 input has no float statistics; that is intended.
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")

SEED = 0
H, W, C_IN, FILTERS, UNITS = 8, 8, 2, 4, 5
DEPTHWISE_MACS = H * W * C_IN * 3 * 3  # out_h * out_w * out_c * k_h * k_w
CONV_MACS = H * W * FILTERS * 3 * 3 * C_IN  # out_h * out_w * out_c * k_h * k_w * in_c
DENSE_MACS = (H * W * FILTERS) * UNITS  # one row (batch 1) of in * out
TOTAL_MACS = DEPTHWISE_MACS + CONV_MACS + DENSE_MACS  # 1152 + 4608 + 1280


@dataclass(frozen=True)
class Tiny:
    fp32_tflite: Path
    fp16_tflite: Path  # weights stored as float16, DEQUANTIZE ops in front of the layers
    int8_tflite: Path
    fp32_onnx: Path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((H, W, C_IN), name="x")
    x = keras.layers.DepthwiseConv2D(3, padding="same")(inputs)
    x = keras.layers.Conv2D(FILTERS, 3, padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(UNITS)(x)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(x))
    out = tmp_path_factory.mktemp("floor")
    names = ("fp32.tflite", "fp16.tflite", "int8.tflite", "fp32.onnx")
    paths = Tiny(*(out / f"tiny_{name}" for name in names))
    paths.fp32_tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    paths.fp16_tflite.write_bytes(_fp16(tf, model))
    paths.int8_tflite.write_bytes(_int8(tf, model))
    signature = [tf.TensorSpec([None, H, W, C_IN], tf.float32, name="x")]
    proto, _ = tf2onnx.convert.from_function(tf.function(model), input_signature=signature, opset=18)
    paths.fp32_onnx.write_bytes(proto.SerializeToString())
    return paths


def _fp16(tf: Any, model: Any) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return bytes(converter.convert())


def _int8(tf: Any, model: Any) -> bytes:
    rng = np.random.default_rng(SEED)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.standard_normal((1, H, W, C_IN)).astype(np.float32)] for _ in range(8)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


# --- graph_macs --------------------------------------------------------------------------


def test_tflite_macs_match_the_layer_shapes(tiny: Tiny) -> None:
    counted = macs.graph_macs(tiny.fp32_tflite)
    assert counted["total"] == TOTAL_MACS
    assert counted["by_op"] == {
        "CONV_2D": CONV_MACS,
        "DEPTHWISE_CONV_2D": DEPTHWISE_MACS,
        "FULLY_CONNECTED": DENSE_MACS,
    }
    assert [layer["op"] for layer in counted["layers"]] == ["DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    # the dynamic batch (-1) counts as one image
    assert counted["layers"][2]["shape"] == f"1x{H * W * FILTERS} @ {H * W * FILTERS}x{UNITS}"
    assert counted["elementwise"] == {"total": UNITS, "by_op": {"LOGISTIC": UNITS}}
    assert counted["uncounted"] == []


def test_quantized_tflite_counts_float_equivalent_macs(tiny: Tiny) -> None:
    assert macs.graph_macs(tiny.int8_tflite)["total"] == TOTAL_MACS
    assert macs.graph_macs(tiny.fp16_tflite)["total"] == TOTAL_MACS


def test_onnx_agrees_with_tflite(tiny: Tiny) -> None:
    onnx_count = macs.graph_macs(tiny.fp32_onnx)
    assert onnx_count["format"] == "onnx"
    assert onnx_count["total"] == macs.graph_macs(tiny.fp32_tflite)["total"] == TOTAL_MACS
    assert onnx_count["by_op"] == {"Conv": DEPTHWISE_MACS + CONV_MACS, "MatMul": DENSE_MACS}


def test_onnx_rules_on_a_hand_built_graph(tmp_path: Path) -> None:
    """Gemm with transA, a batched MatMul, a symbolic batch dim, an LSTM listed as uncounted."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def value(name: str, shape: list[Any]) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    nodes = [
        helper.make_node("Gemm", ["a", "b"], ["g"], transA=1),  # a [4, 3]^T @ b [4, 6] -> [3, 6], K = 4
        helper.make_node("MatMul", ["m", "n"], ["mm"]),  # [N, 3, 4] @ [4, 5] -> [N, 3, 5], K = 4
        helper.make_node("Tanh", ["mm"], ["t"]),
        helper.make_node("LSTM", ["s", "lw", "lr"], ["ly"], hidden_size=2),
    ]
    graph = helper.make_graph(
        nodes,
        "hand",
        [value("a", [4, 3]), value("b", [4, 6]), value("m", ["N", 3, 4]), value("n", [4, 5]),
         value("s", [7, 1, 3]), value("lw", [1, 8, 3]), value("lr", [1, 8, 2])],
        [value("g", None), value("t", None), value("ly", None)],
    )
    path = tmp_path / "hand.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    counted = macs.graph_macs(path)
    assert counted["by_op"] == {"Gemm": 3 * 6 * 4, "MatMul": 1 * 3 * 5 * 4}
    assert counted["elementwise"]["by_op"] == {"Tanh": 15}
    assert counted["uncounted"] == ["LSTM"]


def test_a_file_that_is_no_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not a model at all")
    with pytest.raises(ModelLoadError, match="garbage.onnx"):
        macs.graph_macs(path)


# --- peak_probe and floor_us ----------------------------------------------------------------


@pytest.mark.parametrize("kind", peak.PROBE_KINDS)
def test_peak_probe_measures_its_own_probe_layers(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorflow")
    monkeypatch.setattr(peak, "PROBE_CACHE", tmp_path)  # build the probes afresh, away from the shared cache
    result = peak.peak_probe(kind, seconds=0.2)
    assert result["kind"] == kind
    assert math.isfinite(result["macs_per_s"]) and result["macs_per_s"] > 0
    fc, conv = result["probes"]
    rows, depth, units = peak.FC_PROBE
    assert fc["macs"] == rows * depth * units  # the graph count of the built file matches its design
    height, width, channels, kernel, filters = peak.CONV_PROBE
    assert conv["macs"] == height * width * filters * kernel * kernel * channels
    assert result["macs_per_s"] == max(fc["macs_per_s"], conv["macs_per_s"])
    assert all(probe["runs"] >= 3 and probe["best_us"] <= probe["median_us"] for probe in (fc, conv))
    assert len(list(tmp_path.glob(f"*_{kind}.tflite"))) == 2
    if kind == "float32":
        assert result["numpy_reference"]["macs_per_s"] > 0


def test_peak_probe_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="'int4'"):
        peak.peak_probe("int4")


def test_floor_us() -> None:
    assert floor.floor_us(2_000_000, 1e9) == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="positive"):
        floor.floor_us(1, 0.0)


# --- op_profile ----------------------------------------------------------------------------


def test_onnx_profile_shares_sum_to_one(tiny: Tiny) -> None:
    profile = profiling.op_profile(tiny.fp32_onnx, runs=20)
    assert profile["method"].startswith("onnxruntime profiler")
    assert sum(op["share"] for op in profile["ops"]) == pytest.approx(1.0)
    assert all(op["us"] >= 0 for op in profile["ops"])
    assert {"Conv", "MatMul"} <= {op["op"] for op in profile["ops"]}
    assert profile["run_us"] > 0


def test_tflite_profile_times_every_op(tiny: Tiny) -> None:
    profile = profiling.op_profile(tiny.fp32_tflite, runs=20)
    counted = macs.graph_macs(tiny.fp32_tflite)
    assert profile["method"].startswith("prefix difference")
    assert [node["op"] for node in profile["nodes"]][:2] == ["DEPTHWISE_CONV_2D", "CONV_2D"]
    assert sum(op["share"] for op in profile["ops"]) == pytest.approx(1.0)
    assert all(node["us"] >= 0 for node in profile["nodes"])
    shares = {op["op"]: op["mac_share"] for op in profile["ops"]}
    assert shares["CONV_2D"] == pytest.approx(CONV_MACS / counted["total"])
    assert "not a time share" in profile["note"]


def test_tflite_profile_keeps_weight_dequantization_out_of_cut_outputs(tiny: Tiny) -> None:
    """A DEQUANTIZE of float16 weights made a graph output stopped XNNPACK from setting up."""
    profile = profiling.op_profile(tiny.fp16_tflite, runs=10)
    ops = [node["op"] for node in profile["nodes"]]
    assert "DEQUANTIZE" in ops and "CONV_2D" in ops
    assert sum(op["share"] for op in profile["ops"]) == pytest.approx(1.0)
