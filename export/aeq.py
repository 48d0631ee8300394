"""SavedModel -> TFLite with a precision per stage, through AI Edge Quantizer.

The TFLite converter quantizes a whole model to one scheme (or denies ops, as
``export.tflite`` does for the int8 float front); AI Edge Quantizer, Google's
maintained quantizer for LiteRT, applies a recipe: per-op rules matched by
layer name (``export.precision.ai_edge_recipe``), int8 or int16 activations
with int8 weights, or float, to a float TFLite model. Runs in a worker process
(``export.isolate``), as every converter does.

Calibration takes each tensor's min / max over all calibration images
(``minmax``) unless the format asks for AI Edge Quantizer's own moving average
(``moving-average``); the file then takes raw uint8 pixels and gives integer
probabilities where its head is integer (``export.tflite_edit``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cllnn_edge.model import INPUT_NAME, model_input  # the unrolled graph's input, as converters see it
from export.errors import ConversionError
from export.isolate import Conversion
from export.precision import MINMAX, MOVING_AVERAGE, Recipe, ai_edge_recipe
from export.tflite import SIGNATURE, to_tflite
from export.tflite_edit import integer_outputs, raw_uint8_input, shapes_read_directly, signature_on_outputs

MINMAX_BATCH = 50  # images per calibration step; with minmax the ranges do not depend on it


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


def quantize_tflite(float_model: bytes, recipe: Recipe, images: np.ndarray | None, method: str) -> bytes:
    """Quantize a float TFLite model by ``recipe``, calibrated on uint8 ``images`` (N, H, W[, C])."""
    from ai_edge_quantizer import calibrator, quantizer, recipe_manager

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
    model = quantizer.Quantizer(bytearray(float_model), rules)
    quantized = model.quantize(ranges or None, enable_progress_report=False).quantized_model
    edited = integer_outputs(signature_on_outputs(shapes_read_directly(bytes(quantized))))
    return raw_uint8_input(edited)


def _overall_min_max(seen: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A tensor's range over every calibration step so far (AI Edge Quantizer's update hook)."""
    if not seen:
        return new
    return {"min": np.minimum(seen["min"], new["min"]), "max": np.maximum(seen["max"], new["max"])}
