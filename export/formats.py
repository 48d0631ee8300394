"""The format registry: one declaration per export format holds all that differs between formats.

A format names its file, the runtime that runs it, its precision (its row of
the tolerance table, ``runtime.tolerances``), the converter a worker
process calls, and the checks on the file beyond its outputs. The worker,
``convert``, ``describe``, ``parity``, config checks and CLI help read this
table; none of them branches on a format's name. Adding a format is one
declaration here (and a converter, if no existing one fits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export.file_checks import BUILTINS_ONLY, INT8_AFTER_FRONT, NO_LOOP, RAW_UINT8_INPUT, FileCheck

if TYPE_CHECKING:
    from export.isolate import Conversion

Converter = Callable[[Path, Path, "Conversion"], None]  # (SavedModel, output file, settings)
ALL = "all"  # in a format list: every format of the registry


# The converters import TensorFlow, tf2onnx or ONNX Runtime's quantizer when they run (in a
# worker process), not when the registry is read (``cllnn-export --help`` lists the names).
def _tflite(precision: str) -> Converter:
    def convert(source: Path, out: Path, conversion: Conversion) -> None:
        from export.tflite import to_tflite

        to_tflite(source, out, conversion, precision=precision)

    return convert


def _onnx_float(source: Path, out: Path, conversion: Conversion) -> None:
    from export.onnx import to_onnx_float

    to_onnx_float(source, out, conversion)


def _onnx_int8(source: Path, out: Path, conversion: Conversion) -> None:
    from export.onnx import to_onnx_int8

    to_onnx_int8(source, out, conversion)


@dataclass(frozen=True)
class Format:
    """One deployable flavour of the model."""

    name: str  # as the CLI spells it
    file: str  # file name inside the artefacts directory
    runtime: str  # the ``runtime`` backend that runs it: "litert" or "onnxruntime"
    precision: str  # its row of the tolerance table
    description: str
    convert: Converter  # runs inside a worker process (export.worker)
    checks: tuple[FileCheck, ...]  # on the file itself, beyond its outputs
    # Needs calibration images; converted from the int8 variant of the graph that
    # ``export.int8_graph`` names (see export.unroll).
    calibrated: bool = False
    # Its converter runs in a process of its own (tf2onnx): the worker converts
    # the stage probe alongside instead of after.
    out_of_process: bool = False
    # Same inputs give the same bytes? Measured by converting twice (tests/e2e checks
    # the formats marked True); where not, the note says why.
    reproducible: bool = True
    reproducibility_note: str = "same model, config and data give identical bytes"


_TF2ONNX_NAMES = (
    "not byte-identical across runs: tf2onnx numbers the constants it generates "
    "differently from run to run; the graph and weights are the same"
)

TFLITE_FP32 = Format("tflite-fp32", "cllnn_fp32.tflite", "litert", "float32",
                     "float32 weights and activations",
                     _tflite("float32"), (BUILTINS_ONLY,))
TFLITE_FP16 = Format("tflite-fp16", "cllnn_fp16.tflite", "litert", "float16",
                     "float16 weights, float32 compute",
                     _tflite("float16"), (BUILTINS_ONLY,))
TFLITE_DYNAMIC = Format("tflite-dynamic", "cllnn_dynamic.tflite", "litert", "dynamic-int8",
                        "int8 weights, activations quantized on the fly",
                        _tflite("dynamic-int8"), (BUILTINS_ONLY,))
TFLITE_INT8 = Format("tflite-int8", "cllnn_int8.tflite", "litert", "int8",
                     "uint8 pixels in, int8 kernels (the first conv stage float32 by default), "
                     "int8 probabilities out",
                     _tflite("int8"), (BUILTINS_ONLY, RAW_UINT8_INPUT, INT8_AFTER_FRONT),
                     calibrated=True)
ONNX_FP32 = Format("onnx-fp32", "cllnn_fp32.onnx", "onnxruntime", "float32", "float32, via tf2onnx",
                   _onnx_float, (NO_LOOP,), out_of_process=True,
                   reproducible=False, reproducibility_note=_TF2ONNX_NAMES)
ONNX_INT8 = Format("onnx-int8", "cllnn_int8.onnx", "onnxruntime", "int8",
                   "int8 QDQ, static calibration (ONNX Runtime quantization)",
                   _onnx_int8, (NO_LOOP,), calibrated=True, out_of_process=True,
                   reproducible=False, reproducibility_note=_TF2ONNX_NAMES)

FORMATS: dict[str, Format] = {
    f.name: f for f in (TFLITE_FP32, TFLITE_FP16, TFLITE_DYNAMIC, TFLITE_INT8, ONNX_FP32, ONNX_INT8)
}


def parse_formats(names: str | tuple[str, ...] | list[str] | None) -> tuple[Format, ...]:
    """``"tflite-int8,onnx-fp32"`` (or a list of names) -> formats; None or "all" -> every format."""
    if names is None:
        names = ALL
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if names == [ALL]:
        return tuple(FORMATS.values())
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        from export.errors import ExportError

        raise ExportError(
            f"unknown format(s) {unknown or names}; choose from {', '.join(FORMATS)} (or '{ALL}')"
        )
    return tuple(FORMATS[n] for n in dict.fromkeys(names))


def formats_help() -> str:
    """The format names for ``--help``, from the registry."""
    return ", ".join(FORMATS)
