"""SavedModel of the unrolled CLLNN -> ONNX float32 (tf2onnx), int8 and per-stage precision (ONNX Runtime QDQ).

The quantized files come from one place, ``quantize_onnx``: ``onnx-int8`` is
the all-int8 recipe, ``onnx-mixed`` any recipe (``export.formats.precision``): nodes
of float32 stages are left out of quantization, those of int16x8 stages get
16-bit activations (int8 weights), int8 stages as ``onnx-int8``. All run
inside worker processes (see ``export.formats.isolate``); only those import this module (through
``export.formats.registry.Converter``), so ONNX and its quantizer load at its top.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cllnn_edge.model import INPUT_NAME, model_input  # the unrolled graph's input, as converters see it
from export.errors import ConversionError
from export.formats.isolate import Conversion
from export.formats.precision import DISTRIBUTION, ENTROPY, FLOAT32, INT8, INT16X8, MINMAX, PERCENTILE, Recipe, stage_of
from export.lifeline import child_env, guarded

# export.formats.precision's calibration methods -> ONNX Runtime's CalibrationMethod members, each with ONNX
# Runtime's defaults (quantize_static passes no histogram sizes). Demo model, 1,000 test images against
# Keras (max abs / top-1, onnx-int8, 200 | 1000 calibration images): minmax 0.168 / 100% | 0.341 / 99.3%;
# entropy the same bytes as minmax (128 bins, 128 quantized bins: its only candidate threshold is the
# whole range; 2048 bins clipped outliers: 0.92 / 98.9%); percentile (99.999 of |x|, a symmetric
# range) 0.289 / 99.9% | 0.181 / 99.8%; distribution 0.789 / 98.1% | 0.842 / 97.6% (fails the gate).
WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")  # kernels whose constant input is a weight matrix (int8)
ORT_CALIBRATION = {MINMAX: "MinMax", ENTROPY: "Entropy", PERCENTILE: "Percentile", DISTRIBUTION: "Distribution"}


def to_onnx_float(saved_model: Path, out: Path, conversion: Conversion) -> None:
    """tf2onnx's converter on the SavedModel, then onnx.checker with full shape inference."""
    command = guarded([  # dies with the worker (export.lifeline)
        sys.executable, "-m", "tf2onnx.convert",
        "--saved-model", str(saved_model),
        "--output", str(out),
        "--opset", str(conversion.opset),
    ])
    done = subprocess.run(command, capture_output=True, text=True, env=child_env())
    if done.returncode != 0 or not out.exists():
        raise ConversionError(f"tf2onnx failed (exit {done.returncode}): {done.stderr[-2000:]}")
    model = onnx.load(str(out))
    # tf2onnx records the SavedModel's (temporary) path; keep the file free of it.
    model.graph.doc_string = "unrolled CLLNN, converted by tf2onnx"
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"tf2onnx produced an invalid ONNX model: {exc}") from exc
    onnx.save(model, str(out))


def to_onnx_int8(saved_model: Path, out: Path, conversion: Conversion) -> None:
    """The SavedModel to float ONNX (``to_onnx_float``), then to int8 QDQ (``quantize_onnx``)."""
    if conversion.calibration is None or len(conversion.calibration) == 0:
        raise ConversionError("int8 ONNX needs calibration images")
    _quantized(saved_model, out, conversion)


def to_onnx_recipe(saved_model: Path, out: Path, conversion: Conversion) -> None:
    """The SavedModel to float ONNX, then quantized stage by stage per ``conversion.recipe``."""
    recipe = conversion.recipe
    if recipe is None:
        raise ConversionError("a recipe format needs a recipe (precision per stage)")
    if recipe.tolerance_row == FLOAT32:
        to_onnx_float(saved_model, out, conversion)
        return
    if conversion.calibration is None or len(conversion.calibration) == 0:
        raise ConversionError(f"recipe {recipe.tag} quantizes activations: it needs calibration images")
    _quantized(saved_model, out, conversion)


def _quantized(saved_model: Path, out: Path, conversion: Conversion) -> None:
    float_model = out.with_name(out.name + ".float.onnx")
    try:
        to_onnx_float(saved_model, float_model, conversion)
        quantize_onnx(float_model, conversion, out)
    finally:
        float_model.unlink(missing_ok=True)


def quantize_onnx(float_model: Path, conversion: Conversion, out: Path) -> None:
    """Static QDQ quantization of the float ONNX model by ``conversion.recipe`` (None: int8
    throughout), calibrated on ``conversion.calibration`` by ``conversion.calibration_method``.

    Nodes of ``conversion.float_layers`` (export.graph.unroll's float front) and of
    float32 stages stay float32. int8 activations are uint8, weights int8
    (U8S8, ONNX Runtime's fast path on x86): with int8 activations ONNX Runtime
    converted a QDQ pair to uint8 only where one consumer read it, so the LSTM
    gates, which share their input, stayed float Gemms that dequantized their
    weights on every run (0.54x the float32 file's time against 0.33x).
    int16x8 stages have int16 activations (``_int16_overrides``); ONNX Runtime
    then raises the model to opset 21, where QuantizeLinear takes int16. Its CPU
    kernels fuse no int16 Q/DQ: such a stage runs dequantize -> float -> quantize
    (demo model, reservoir=int16x8, batch 1, one thread: 514 us p50 against
    130 us for onnx-int8 and 265 us for float32; a shared 2-core x86 host).

    The final Softmax stays float: quantized, its ten outputs miss a sum of 1
    by up to ~0.012, and in float it costs ten exponentials. ``per_channel``
    applies to convolutions (the per-column standardiser needs its own scale
    per column); MatMul / Gemm weights stay per-tensor: ONNX Runtime 1.32
    dequantizes per-channel MatMul weights on every run instead of fusing
    them (the LSTM gates took 56% of an inference that way, 509 us p50).
    """
    method = _calibration_method(conversion.calibration_method)
    recipe = conversion.recipe or Recipe.uniform(INT8)
    prepared = out.with_name(out.name + ".pre.onnx")
    try:
        quant_pre_process(str(float_model), str(prepared))
        graph = onnx.load(str(prepared)).graph
        precision = _node_precisions(graph, recipe)
        kept_float = [n.name for n in graph.node if n.op_type == "Softmax" or conversion.keeps_float(n.name)
                      or precision[n.name] == FLOAT32]
        overrides = {**_per_tensor_matmul_weights(graph), **_int16_overrides(graph, precision, set(kept_float))}
        quantize_static(
            str(prepared),
            str(out),
            _Images(conversion.calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=conversion.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=kept_float,
            calibrate_method=method,
            extra_options={"TensorQuantOverrides": overrides},
        )
    finally:
        prepared.unlink(missing_ok=True)


class _Images(CalibrationDataReader):
    """Calibration images as ONNX Runtime reads them: the graph's input, in batches."""

    def __init__(self, images: np.ndarray, batch: int = 50) -> None:
        x = model_input(images)
        self._batches = iter([{INPUT_NAME: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _calibration_method(name: str) -> CalibrationMethod:
    """ONNX Runtime's ``CalibrationMethod`` for one of ``ORT_CALIBRATION``'s names."""
    if name not in ORT_CALIBRATION:
        raise ConversionError(f"ONNX Runtime calibrates with {', '.join(ORT_CALIBRATION)}, not {name!r}")
    return CalibrationMethod[ORT_CALIBRATION[name]]


def _node_precisions(graph: object, recipe: Recipe) -> dict[str, str]:
    """Each node's precision by its stage; one precision throughout needs no stages."""
    if len(set(recipe.precisions)) == 1:
        return {node.name: recipe.precisions[0] for node in graph.node}
    return {name: recipe.of(stage) for name, stage in node_stages(graph).items()}


def node_stages(graph: object) -> dict[str, str]:
    """Each node's stage: by its name (``export.formats.precision.stage_of``); nodes tf2onnx adds under
    no layer's name (a Transpose to NHWC, the Shape feeding a Reshape) take the stage of the node
    whose output they read, else of the first node that reads theirs."""
    nodes = list(graph.node)
    stages = {node.name: stage_of(node.name) for node in nodes}
    producer = {output: node.name for node in nodes for output in node.output}
    for node in nodes:  # in topological order: a producer's stage is known before its readers'
        if stages[node.name] is None:
            stages[node.name] = next((stages[producer[i]] for i in node.input
                                      if i in producer and stages[producer[i]]), None)
    for node in reversed(nodes):
        if stages[node.name] is None:
            stages[node.name] = next((stages[reader.name] for reader in nodes
                                      if set(reader.input) & set(node.output) and stages[reader.name]), None)
    unplaced = sorted(name for name, stage in stages.items() if stage is None)
    if unplaced:
        raise ConversionError(f"no stage for ONNX node(s) {unplaced[:5]}: they neither carry a layer's name "
                              f"nor read or feed a node that does")
    return stages  # type: ignore[return-value]


def _int16_overrides(
    graph: object, precision: dict[str, str], kept_float: set[str]
) -> dict[str, list[dict[str, object]]]:
    """int16 for the activations of int16x8 stages, as ``TensorQuantOverrides``.

    Constants other than a kernel's weights (the standardiser's per-column
    mean and 1 / std, read by Sub and Mul) are int16 too: as 8-bit weights,
    one scale for 1 / std values from ~0.01 to ~80 moved the demo model's
    probabilities by up to 0.29 with the CNN int16x8 and the rest float
    (0.0081 with them int16; every stage int16x8: 0.037).

    A tensor is quantized once, at its producer's precision (the graph input,
    or the output of a float node, at its readers'). Where an int16 tensor
    feeds an int8 node (the reservoir's state into the LSTM gates) it is
    converted to uint8 for that node (ONNX Runtime's ``convert``), so the
    int8 stage keeps its integer kernels. An int8 tensor read by an int16
    node stays int8: converting it would add no information.
    """
    initializers = {tensor.name for tensor in graph.initializer}
    quantized = [node for node in graph.node if node.name not in kept_float]
    producer = {output: precision[node.name] for node in quantized for output in node.output}
    readers: dict[str, list[str]] = {}
    for node in quantized:
        for name in node.input:
            if name and name not in initializers:
                readers.setdefault(name, []).append(node.name)
    overrides: dict[str, list[dict[str, object]]] = {}
    for tensor, names in readers.items():
        kind = producer.get(tensor) or min((precision[n] for n in names), key=[INT16X8, INT8].index)
        if kind != INT16X8:
            continue
        override: dict[str, object] = {"quant_type": QuantType.QInt16}
        int8_readers = {n for n in names if precision[n] == INT8}
        if int8_readers:
            override["convert"] = {"quant_type": QuantType.QUInt8, "recv_nodes": int8_readers}
        overrides[tensor] = [override]
    for node in quantized:  # int16 outputs nothing quantized reads (the model's output before Softmax)
        if precision[node.name] == INT16X8:
            for tensor in node.output:
                overrides.setdefault(tensor, [{"quant_type": QuantType.QInt16}])
    for node in quantized:  # constants an int16x8 node computes with, but for a kernel's weights
        if precision[node.name] == INT16X8 and node.op_type not in WEIGHTED_OPS:
            for tensor in node.input:
                if tensor in initializers:
                    overrides.setdefault(tensor, [{"quant_type": QuantType.QInt16}])
    return overrides


def _per_tensor_matmul_weights(graph: object) -> dict[str, list[dict[str, object]]]:
    """Per-tensor overrides for the weights of every MatMul / Gemm (their second input)."""
    initializers = {tensor.name for tensor in graph.initializer}
    return {
        node.input[1]: [{"quant_type": QuantType.QInt8}]
        for node in graph.node
        if node.op_type in ("MatMul", "Gemm") and node.input[1] in initializers
    }
