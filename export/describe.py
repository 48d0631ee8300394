"""Describe and check one converted file through ``runtime``, as a device would load it.

The manifest entry records what the file is (specs, op counts, checksum) and
how it compares with the trained model on real test images; the checks are
the export-time gate (the full, stage-by-stage comparison is ``parity``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import runtime
from export.errors import ConversionError
from export.formats import Format
from export.metrics import probability_metrics
from runtime.manifest import ArtifactEntry, sha256_file

PROBES_DIR = "probes"  # stage probes, beside the artefacts: probes/<artefact file name>
FLOAT_TYPES = ("float16", "float32", "float64")
LOOP_OPS = ("Loop", "Scan", "If")
FLEX_PREFIXES = ("Flex", "CUSTOM")


def describe_artifact(
    fmt: Format, path: Path, images: np.ndarray, reference: np.ndarray
) -> ArtifactEntry:
    """Load ``path`` with the device runtime, run it on ``images``, check it against ``reference``."""
    try:
        model = runtime.load(path)
    except (ValueError, OSError) as exc:
        raise ConversionError(f"{fmt.name}: the device runtime cannot load the file: {exc}") from exc
    with model:
        probs = model.predict(images)
        inputs, outputs, ops = (model.input_spec,), (model.output_spec,), model.ops
    metrics = probability_metrics(reference, probs)
    checks = _checks(fmt, path, metrics, inputs, ops)
    return ArtifactEntry(
        file=path.name,
        format=fmt.name,
        runtime=fmt.runtime,
        precision=fmt.precision,
        sha256=sha256_file(path),
        size=path.stat().st_size,
        inputs=inputs,
        outputs=outputs,
        ops=ops,
        details={
            "description": fmt.description,
            "metrics": metrics,
            "checks": checks,
            "reproducible": fmt.reproducible,
            "reproducibility": fmt.reproducibility_note,
        },
    )


def describe_probe(path: Path, root: Path, images: np.ndarray) -> dict[str, Any]:
    """The manifest's record of a stage probe file, or ``{"error": ...}`` if the runtime cannot run it.

    A probe is the artefact's graph converted with the same settings but with
    one output per stage (``export.unroll.STAGES``, in that order); ``parity``
    reads it with ``RuntimeModel.predict_outputs``. It is run once on a few
    ``images`` here, so a recorded probe is known to load and run.
    """
    from export.unroll import STAGES

    try:
        with runtime.load(path) as model:
            outputs = model.predict_outputs(images[:8])
            specs = model.output_specs
    except (ValueError, OSError, runtime.EdgeRuntimeError) as exc:
        return {"error": f"the device runtime cannot run the probe: {exc}"}
    if len(outputs) != len(STAGES):
        return {"error": f"the probe has {len(outputs)} outputs, expected {len(STAGES)} ({STAGES})"}
    return {
        "file": path.relative_to(root).as_posix(),
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "stages": list(STAGES),
        "outputs": [spec.to_dict() for spec in specs],
    }


def _checks(
    fmt: Format,
    path: Path,
    metrics: dict[str, float],
    inputs: tuple[Any, ...],
    ops: dict[str, int],
) -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    if fmt.max_abs is not None:
        checks["max_abs"] = _check(metrics["max_abs"] <= fmt.max_abs, metrics["max_abs"],
                                   f"<= {fmt.max_abs:g}")
    if fmt.min_top1 is not None:
        checks["top1_agreement"] = _check(metrics["top1_agreement"] >= fmt.min_top1,
                                          metrics["top1_agreement"], f">= {fmt.min_top1:g}")
    if fmt.runtime == "onnxruntime":
        loops = sorted(op for op in ops if op in LOOP_OPS)
        checks["no_loop"] = _check(not loops, loops, "no Loop / Scan / If nodes")
    else:
        flex = sorted(op for op in ops if op.startswith(FLEX_PREFIXES))
        checks["builtins_only"] = _check(not flex, flex, "builtin TFLite kernels only")
    if fmt.name == "tflite-int8":
        spec = inputs[0]
        lossless = spec.dtype == "uint8" and spec.scale == 1.0 and spec.zero_point == 0
        checks["raw_uint8_input"] = _check(
            lossless, {"dtype": spec.dtype, "scale": spec.scale, "zero_point": spec.zero_point},
            "uint8 input, scale 1, zero point 0",
        )
        float_ops = float_kernels(path)
        checks["integer_only"] = _check(not float_ops, float_ops, "no float kernel inside")
    return checks


def float_kernels(path: Path) -> list[str]:
    """Ops of a TFLite file that read or write a float tensor."""
    return sorted(
        {
            op
            for op, in_types, out_types in runtime.tflite_op_dtypes(path)
            if any(t in FLOAT_TYPES for t in (*in_types, *out_types))
        }
    )


def _check(passed: bool, value: Any, expected: str) -> dict[str, Any]:
    return {"passed": bool(passed), "value": value, "expected": expected}
