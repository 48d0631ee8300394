"""SavedModel of the unrolled CLLNN -> TFLite: float32, float16, dynamic-range, full int8.

Runs inside a worker process (see ``export.formats.isolate``): the TFLite converter
has been seen to segfault on some int8 configurations, and a crash must not
take the other formats down. Only workers import it (``export.formats.registry.Converter``), so
TensorFlow loads at its top.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.tools import flatbuffer_utils
from tensorflow.lite.python import convert as tflite_convert

from cllnn_edge.model import model_input
from export.errors import ConversionError
from export.formats.isolate import Conversion
from export.formats.tflite_edit import raw_uint8_input

SIGNATURE = "serve"


def to_tflite(saved_model: Path, out: Path, conversion: Conversion, *, precision: str) -> None:
    """Convert with builtin ops only (no Flex / SELECT_TF_OPS) and write ``out``.

    ``precision``: "float32", "float16", "dynamic-int8" or "int8". Full int8
    takes uint8 pixels: calibration images span 0..255, so the input scale is
    exactly 1 and every pixel value maps into the input tensor without loss.
    """
    calibration = conversion.calibration

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # per-tensor dense weights: an older FULLY_CONNECTED version (isolate.PER_CHANNEL_DENSE_OP)
        converter._experimental_disable_per_channel_quantization_for_dense_layers = (  # type: ignore[attr-defined]
            not conversion.per_channel_dense)
    elif precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ConversionError("full-int8 TFLite needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
        if conversion.float_layers:
            out.write_bytes(_int8_with_float_layers(converter, conversion))
            return
    elif precision != "float32":
        raise ConversionError(f"unknown TFLite precision {precision!r}")
    out.write_bytes(converter.convert())


def _int8_with_float_layers(converter: object, conversion: Conversion) -> bytes:
    """Full int8 but for the ops of ``conversion.float_layers``, which stay float32.

    The converter calibrates only; TFLite's MLIR quantizer then quantizes every
    op but those it is told to deny (as ``tf.lite.experimental.QuantizationDebugger``
    does for selective quantization). Its model takes int8 pixels into a
    DEQUANTIZE; that input is turned into raw uint8 pixels (``export.formats.tflite_edit``).
    """
    converter._experimental_calibrate_only = True  # type: ignore[attr-defined]
    calibrated = converter.convert()  # type: ignore[attr-defined]
    model = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    graph = model.subgraphs[0]
    names = [graph.tensors[op.outputs[0]].name.decode() for op in graph.operators]
    denied = {name for name in names if conversion.keeps_float(name)}
    if not denied:
        raise ConversionError(f"no op of the layers {list(conversion.float_layers)} found to keep in float32")
    quantized = tflite_convert.mlir_quantize(calibrated, fully_quantize=True, denylisted_nodes=denied)
    return raw_uint8_input(quantized)


def _representative(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """One image at a time, as float32 raw pixels (the float model's input)."""
    for image in images:
        yield [model_input(image[np.newaxis])]
