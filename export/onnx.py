"""SavedModel of the unrolled CLLNN -> ONNX float32 (tf2onnx) and int8 (ONNX Runtime QDQ).

Both run inside worker processes (see ``export.isolate``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from export.errors import ConversionError
from export.isolate import Conversion
from runtime.lifeline import child_env, guarded

INPUT_NAME = "pixels"


def to_onnx_float(saved_model: Path, out: Path, conversion: Conversion) -> None:
    """tf2onnx's converter on the SavedModel, then onnx.checker with full shape inference."""
    import onnx

    command = guarded([  # dies with the worker (runtime.lifeline)
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
    float_model = out.with_name(out.name + ".float.onnx")
    try:
        to_onnx_float(saved_model, float_model, conversion)
        quantize_onnx(float_model, conversion, out)
    finally:
        float_model.unlink(missing_ok=True)


def quantize_onnx(float_model: Path, conversion: Conversion, out: Path) -> None:
    """Static QDQ int8 quantization of the float ONNX model, calibrated on ``conversion.calibration``.

    Nodes of ``conversion.float_layers`` stay float32 (export.unroll's float front).
    Activations are uint8, weights int8 (U8S8, ONNX Runtime's fast path on x86):
    with int8 activations ONNX Runtime converted a QDQ pair to uint8 only where
    one consumer read it, so the LSTM gates, which share their input, stayed
    float Gemms that dequantized their weights on every run (0.54x the float32
    file's time against 0.33x).

    The final Softmax stays float: quantized, its ten outputs miss a sum of 1
    by up to ~0.012, and in float it costs ten exponentials. ``per_channel``
    applies to convolutions (the per-column standardiser needs its own scale
    per column); MatMul / Gemm weights stay per-tensor: ONNX Runtime 1.32
    dequantizes per-channel MatMul weights on every run instead of fusing
    them (the LSTM gates took 56% of an inference that way, 509 us p50).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self, images: np.ndarray, batch: int = 50) -> None:
            x = images.astype(np.float32)[..., np.newaxis]
            self._batches = iter([{INPUT_NAME: x[i : i + batch]} for i in range(0, len(x), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    prepared = out.with_name(out.name + ".pre.onnx")
    try:
        quant_pre_process(str(float_model), str(prepared))
        graph = onnx.load(str(prepared)).graph
        kept_float = [n.name for n in graph.node if n.op_type == "Softmax" or conversion.keeps_float(n.name)]
        quantize_static(
            str(prepared),
            str(out),
            Images(conversion.calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=conversion.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=kept_float,
            extra_options={"TensorQuantOverrides": _per_tensor_matmul_weights(graph)},
        )
    finally:
        prepared.unlink(missing_ok=True)


def _per_tensor_matmul_weights(graph: object) -> dict[str, list[dict[str, object]]]:
    """Per-tensor overrides for the weights of every MatMul / Gemm (their second input)."""
    from onnxruntime.quantization import QuantType

    initializers = {tensor.name for tensor in graph.initializer}
    return {
        node.input[1]: [{"quant_type": QuantType.QInt8}]
        for node in graph.node
        if node.op_type in ("MatMul", "Gemm") and node.input[1] in initializers
    }
