"""The headline of each CPU class in RESULTS.md: the targets of issues 7 and 12, as measured.

Every figure a target reads comes from one class's sections (``benchmarks.results``
renders one class at a time), so no target compares figures across classes.
"""

from __future__ import annotations

import math
from typing import Any

from export.formats.registry import ONNX_FP32, ONNX_INT8, TFLITE_FP32, TFLITE_INT8

SEED_PREDICT = "seed-form Keras, model.predict"
SEED_FUNCTION = "seed-form Keras, tf.function"
INT8 = TFLITE_INT8.name  # the format issue 7's targets are stated for


def targets(sections: dict[str, Any], int8_dot: bool | None = None) -> list[tuple[str, str, bool | None]]:
    """(target, where it stands, met?) for each target whose section ran. ``int8_dot``: the CPU
    class has an int8 dot-product instruction (issue 12's int8 targets depend on it; None: unknown)."""
    rows: list[tuple[str, str, bool | None]] = []
    if "inference" in sections:
        batch1 = sections["inference"]["batch1"]["rows"]
        rows += _int8_targets(batch1, int8_dot)
        int8 = batch1.get(f"runtime {INT8}")
        if int8:
            vs_predict = batch1[SEED_PREDICT]["p50_us"] / int8["p50_us"]
            vs_function = batch1[SEED_FUNCTION]["p50_us"] / int8["p50_us"]
            rows.append(("int8 TFLite p50 >= 100x faster than seed-form `model.predict`",
                         f"{vs_predict:,.0f}x", vs_predict >= 100))
            rows.append(("int8 TFLite p50 >= 3x faster than a seed-form `tf.function` call",
                         f"{vs_function:,.1f}x", vs_function >= 3))
            if "floor" in sections and INT8 in sections["floor"]["formats"]:
                multiple = int8["p50_us"] / sections["floor"]["formats"][INT8]["floor_us"]
                rows.append(("int8 TFLite p50 within 3x of the compute floor", f"{multiple:.1f}x the floor",
                             multiple <= 3))
    if "training" in sections:
        speed, accuracy = sections["training"]["speed"], sections["training"]["accuracy"]
        rows.append(("training step time <= 0.6x the seed's code",
                     f"{speed['step_ratio']:.2f}x per step, {speed['epoch_ratio']:.2f}x per epoch",
                     speed["step_ratio"] <= 0.6))
        ours, theirs = accuracy["mean"]["cllnn_edge"], accuracy["mean"]["seed_code"]
        noise = _accuracy_noise(accuracy)
        rows.append(("same accuracy as the seed's code within noise",
                     f"{ours:.4f} vs {theirs:.4f} (noise +-{noise:.4f})", abs(ours - theirs) <= noise))
    if "memory" in sections:
        memory = sections["memory"]["formats"].get(INT8)
        if memory:
            rows.append(("a runtime-only process peaks at <= 10% of a TensorFlow process's memory",
                         f"{100 * memory['vs_tensorflow']:.1f}% (tflite-int8)",
                         memory["vs_tensorflow"] <= 0.10))
    return rows


# Issue 12: int8 p50 as a share of float32's, batch 1, one thread, by CPU class.
INT8_VS_FLOAT32 = {True: 0.5, False: 0.8}  # tflite-int8 / tflite-fp32, with and without int8 dot products
ONNX_INT8_VS_FLOAT32 = 0.8  # onnx-int8 / onnx-fp32, on every class


def _int8_targets(batch1: dict[str, Any], int8_dot: bool | None) -> list[tuple[str, str, bool | None]]:
    rows: list[tuple[str, str, bool | None]] = []
    pairs = ((TFLITE_INT8.name, TFLITE_FP32.name, INT8_VS_FLOAT32.get(int8_dot) if int8_dot is not None else None),
             (ONNX_INT8.name, ONNX_FP32.name, ONNX_INT8_VS_FLOAT32))
    for int8, fp32, limit in pairs:
        if f"runtime {int8}" not in batch1 or f"runtime {fp32}" not in batch1 or limit is None:
            continue
        ratio = batch1[f"runtime {int8}"]["p50_us"] / batch1[f"runtime {fp32}"]["p50_us"]
        rows.append((f"{int8} p50 <= {limit}x {fp32}", f"{ratio:.2f}x", ratio <= limit))
    return rows


def _accuracy_noise(accuracy: dict[str, Any]) -> float:
    """Two standard errors of a difference of two accuracies on the same number of test images."""
    p, n = accuracy["mean"]["seed_code"], accuracy["test_images"] * len(accuracy["runs"])
    return 2 * math.sqrt(2 * p * (1 - p) / n)
