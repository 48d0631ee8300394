"""SavedModel of the unrolled CLLNN -> TFLite: float32, float16, dynamic-range, full int8.

Runs inside a worker process (see ``export.isolate``): the TFLite converter
has been seen to segfault on some int8 configurations, and a crash must not
take the other formats down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from export.errors import ConversionError
from export.isolate import Conversion

SIGNATURE = "serve"


def to_tflite(saved_model: Path, out: Path, conversion: Conversion, *, precision: str) -> None:
    """Convert with builtin ops only (no Flex / SELECT_TF_OPS) and write ``out``.

    ``precision``: "float32", "float16", "dynamic-int8" or "int8". Full int8
    takes uint8 pixels: calibration images span 0..255, so the input scale is
    exactly 1 and every pixel value maps into the input tensor without loss.
    """
    import tensorflow as tf

    calibration = conversion.calibration

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ConversionError("full-int8 TFLite needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
    elif precision != "float32":
        raise ConversionError(f"unknown TFLite precision {precision!r}")
    out.write_bytes(converter.convert())


def _representative(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """One image at a time, as float32 raw pixels (the float model's input)."""
    for image in images:
        yield [image.astype(np.float32)[np.newaxis, :, :, np.newaxis]]
