"""The export formats: names, files, runtimes and the checks each must pass at export time."""

from __future__ import annotations

from dataclasses import dataclass

from export.errors import ExportError


@dataclass(frozen=True)
class Format:
    """One deployable flavour of the model."""

    name: str  # as the CLI spells it
    file: str  # file name inside the artefacts directory
    runtime: str  # "litert" or "onnxruntime"
    precision: str
    max_abs: float | None  # export-time check on probabilities vs Keras, if any
    min_top1: float | None  # export-time check on top-1 agreement with Keras, if any
    description: str
    # Same inputs give the same bytes? Measured by converting twice (tests/e2e checks
    # the formats marked True); where not, the note says why.
    reproducible: bool = True
    reproducibility_note: str = "same model, config and data give identical bytes"


_TF2ONNX_NAMES = (
    "not byte-identical across runs: tf2onnx numbers the constants it generates "
    "differently from run to run; the graph and weights are the same"
)

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("tflite-fp32", "cllnn_fp32.tflite", "litert", "float32", 1e-5, None,
               "float32 weights and activations"),
        Format("tflite-fp16", "cllnn_fp16.tflite", "litert", "float16", 1e-2, None,
               "float16 weights, float32 compute"),
        Format("tflite-dynamic", "cllnn_dynamic.tflite", "litert", "dynamic-int8", None, 0.98,
               "int8 weights, activations quantized on the fly"),
        Format("tflite-int8", "cllnn_int8.tflite", "litert", "int8", None, 0.98,
               "full integer: uint8 pixels in, int8 kernels, int8 probabilities out"),
        Format("onnx-fp32", "cllnn_fp32.onnx", "onnxruntime", "float32", 1e-5, None,
               "float32, via tf2onnx", False, _TF2ONNX_NAMES),
        Format("onnx-int8", "cllnn_int8.onnx", "onnxruntime", "int8", None, 0.98,
               "int8 QDQ, static calibration (ONNX Runtime quantization)", False, _TF2ONNX_NAMES),
    )
}


def parse_formats(text: str | None) -> tuple[Format, ...]:
    """``"tflite-int8,onnx-fp32"`` -> formats; None or "all" -> every format."""
    if text is None or text.strip() == "all":
        return tuple(FORMATS.values())
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ExportError(
            f"unknown format(s) {unknown or [text]}; choose from {', '.join(FORMATS)} (or 'all')"
        )
    return tuple(FORMATS[n] for n in dict.fromkeys(names))
