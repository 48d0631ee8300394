"""SavedModel -> TFLite with a precision per stage, through AI Edge Quantizer.

The TFLite converter quantizes a whole model to one scheme (or denies ops, as
``export.formats.tflite`` does for the int8 float front); AI Edge Quantizer, Google's
maintained quantizer for LiteRT, applies a recipe: per-op rules matched by
layer name (``export.formats.precision.ai_edge_recipe``), int8 or int16 activations
with int8 weights, or float, to a float TFLite model. Runs in a worker process
(``export.formats.isolate``), as every converter does.

Calibration takes each tensor's min / max over all calibration images
(``minmax``) unless the format asks for AI Edge Quantizer's own moving average
(``moving-average``); the file then takes raw uint8 pixels and gives integer
probabilities where its head is integer (``export.formats.tflite_edit``). An int16 CNN
stage's ranges get ``CNN_INT16_HEADROOM`` over the calibration images'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_quantizer import calibrator, quantizer, recipe_manager

from cllnn_edge.model import INPUT_NAME, model_input  # the unrolled graph's input, as converters see it
from export.errors import ConversionError
from export.formats.isolate import Conversion
from export.formats.precision import INT16X8, MINMAX, MOVING_AVERAGE, Recipe, ai_edge_recipe, stage_of
from export.formats.tflite import SIGNATURE, to_tflite
from export.formats.tflite_edit import integer_outputs, raw_uint8_input, shapes_read_directly, signature_on_outputs

MINMAX_BATCH = 50  # images per calibration step; with minmax the ranges do not depend on it
# An int16 CNN stage's activation ranges, widened by this factor around zero. The standardiser's
# columns of tiny deviation turn a stroke at an image's edge a little brighter than any
# calibration image's into a value far past the calibrated range, clipped at every ReLU after
# it: on sklearn-digits (column 0: 48 at most in training, 64 in a test digit) that moved an
# int16x8 file's probabilities by 0.10 (reservoir 128, LSTM 32) and 0.020 (the seed's sizes);
# with ranges doubled, by 0.0057. Doubling costs one of 16 bits: on the MNIST demo model max
# abs 0.0076 -> 0.0077 (benchmarks/PRECISION.md). 8-bit stages have no bit to spare: unchanged,
# and so is an int16 CNN whose features an int8 reservoir reads (its input range would double:
# cnn=int16x8 alone, 0.146 -> 0.272).
CNN_INT16_HEADROOM = 2.0


def to_tflite_recipe(saved_model: Path, out: Path, conversion: Conversion) -> None:
    """The float32 TFLite file of ``saved_model``, quantized per ``conversion.recipe``."""
    if conversion.recipe is None:
        raise ConversionError("a recipe format needs a recipe (precision per stage)")
    float_model = out.with_name(out.name + ".float.tflite")
    try:
        to_tflite(saved_model, float_model, conversion, precision="float32")
        data = quantize_tflite(float_model.read_bytes(), conversion.recipe, conversion.calibration,
                               conversion.calibration_method)
    finally:
        float_model.unlink(missing_ok=True)
    out.write_bytes(data)


def quantize_tflite(float_model: bytes, recipe: Recipe, images: np.ndarray | None, method: str,
                    cnn_headroom: float = CNN_INT16_HEADROOM) -> bytes:
    """Quantize a float TFLite model by ``recipe``, calibrated on uint8 ``images`` (N, H, W[, C]);
    ``cnn_headroom``: the factor an int16 CNN stage's ranges are widened by (1: as calibrated)."""
    rules = ai_edge_recipe(recipe)
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(rules)
    ranges: dict[str, Any] = {}
    if manager.need_calibration():
        if images is None or len(images) == 0:
            raise ConversionError(f"recipe {recipe.tag} quantizes activations: it needs calibration images")
        if method not in (MINMAX, MOVING_AVERAGE):
            raise ConversionError(f"AI Edge Quantizer calibrates with {MINMAX} or {MOVING_AVERAGE}, not {method!r}")
        batch = MINMAX_BATCH if method == MINMAX else 1
        pixels = model_input(images)
        data = {SIGNATURE: [{INPUT_NAME: pixels[i : i + batch]} for i in range(0, len(pixels), batch)]}
        options = {"qsv_update_func": _overall_min_max} if method == MINMAX else {}
        calibration = calibrator.Calibrator(float_model, **options)
        calibration.calibrate(data, manager)
        ranges = calibration.get_model_qsvs()
        if recipe.of("cnn") == recipe.of("reservoir") == INT16X8:  # the CNN's output is read at 16 bits
            ranges = _with_cnn_headroom(ranges, cnn_headroom)
    model = quantizer.Quantizer(bytearray(float_model), rules)
    quantized = model.quantize(ranges or None, enable_progress_report=False).quantized_model
    edited = integer_outputs(signature_on_outputs(shapes_read_directly(bytes(quantized))))
    return raw_uint8_input(edited)


def _with_cnn_headroom(ranges: dict[str, Any], factor: float) -> dict[str, Any]:
    """``ranges`` with the CNN stage's float activations widened by ``factor`` around zero
    (integer tensors, such as the shapes a reshape reads, are not quantized: left alone)."""
    def widened(qsv: dict[str, Any]) -> dict[str, Any]:
        return {**qsv, "min": qsv["min"] * factor, "max": qsv["max"] * factor}

    return {name: widened(qsv) if stage_of(name) == "cnn" and np.asarray(qsv["min"]).dtype.kind == "f" else qsv
            for name, qsv in ranges.items()}


def _overall_min_max(seen: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A tensor's range over every calibration step so far (AI Edge Quantizer's update hook)."""
    if not seen:
        return new
    return {"min": np.minimum(seen["min"], new["min"]), "max": np.maximum(seen["max"], new["max"])}
