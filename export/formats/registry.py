"""The format registry: one declaration per export format holds all that differs between formats.

A format names its file, the runtime that runs it, its precision (its row of
the tolerance table, ``runtime.checks.tolerances``), the converter a worker
process calls, and the checks on the file beyond its outputs. The worker,
``convert``, ``describe``, ``parity``, config checks and CLI help read this
table; none of them branches on a format's name. Adding a format is one
declaration here (and a converter, if no existing one fits).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export.errors import ExportError
from export.formats.file_checks import BUILTINS_ONLY, INT8_AFTER_FRONT, INTEGER_ONLY, NO_LOOP, RAW_UINT8_INPUT, FileCheck
from export.formats.precision import (
    DISTRIBUTION,
    ENTROPY,
    FLOAT32,
    INT8,
    INT16X8,
    MINMAX,
    MOVING_AVERAGE,
    PERCENTILE,
    WIDE_CALIBRATION_IMAGES,
    Calibration,
    Recipe,
)
from runtime.artifacts.manifest import format_names
from runtime.artifacts.manifest_schema import LITERT, ONNXRUNTIME, TFLM
from runtime.backends.tflm import INSTALL_HINT, available

if TYPE_CHECKING:
    from cllnn_edge.config import Config
    from export.formats.isolate import Conversion

ALL = "all"  # in a format list: every format of the registry


@dataclass(frozen=True)
class Converter:
    """A converter named by its module and function, imported when it runs (in a worker process), not
    when the registry is read: the converters load TensorFlow, ONNX and the quantizers (seconds), and
    ``cllnn-export --help`` or a config check only list or look up formats."""

    module: str
    function: str
    precision: str | None = None  # passed on as ``precision=`` (the TFLite converter serves four)

    def __call__(self, source: Path, out: Path, conversion: Conversion) -> None:
        """Convert the SavedModel ``source`` into ``out`` with ``conversion``'s settings."""
        convert = getattr(importlib.import_module(self.module), self.function)
        if self.precision is None:
            convert(source, out, conversion)
        else:
            convert(source, out, conversion, precision=self.precision)


def _tflite(precision: str) -> Converter:
    return Converter("export.formats.tflite", "to_tflite", precision)


_onnx_float = Converter("export.formats.onnx", "to_onnx_float")
_onnx_int8 = Converter("export.formats.onnx", "to_onnx_int8")
_tflite_recipe = Converter("export.formats.aeq", "to_tflite_recipe")
_onnx_recipe = Converter("export.formats.onnx", "to_onnx_recipe")


# The graphs formats are converted from (export.pipeline.convert builds those its formats need):
FLOAT_GRAPH = "float"  # the unrolled graph, equivalent to the trained model
INT8_GRAPH = "int8"  # its variant for int8 files, ``[export] int8_graph`` (export.graph.unroll)
SPLIT_GRAPH = "split-projection"  # the reservoir's input projection in two exact parts (export.graph.unroll)


@dataclass(frozen=True)
class Format:
    """One deployable flavour of the model."""

    name: str  # as the CLI spells it
    file: str  # file name inside the artefacts directory
    runtime: str  # the ``runtime`` backend that runs it: one of ``runtime.artifacts.manifest.BACKENDS``
    precision: str  # its row of the tolerance table
    description: str
    convert: Converter  # runs inside a worker process (export.formats.worker)
    checks: tuple[FileCheck, ...]  # on the file itself, beyond its outputs
    # Needs calibration images; converted from the int8 variant of the graph that
    # ``export.int8_graph`` names (see export.graph.unroll).
    calibrated: bool = False
    # Its converter runs in a process of its own (tf2onnx): the worker converts
    # the stage probe alongside instead of after.
    out_of_process: bool = False
    # Same inputs give the same bytes? Measured by converting twice (tests/e2e checks
    # the formats marked True); where not, the note says why.
    reproducible: bool = True
    reproducibility_note: str = "same model, config and data give identical bytes"
    # Calibration methods its converter offers (export.formats.precision); the first is the default.
    calibration_methods: tuple[str, ...] = ()
    # Training images it calibrates on by default (None: ``export.calibration_size``); recipes
    # with an int16x8 stage take ``WIDE_CALIBRATION_IMAGES``.
    calibration_images: int | None = None
    # Built from a precision per stage: this format's own (int16x8), or the config's
    # ``[export.recipe]`` (the "-mixed" formats, ``takes_recipe``).
    recipe: Recipe | None = None
    takes_recipe: bool = False
    family: str = ""  # the registry format a variant was made from (``with_recipe``); "" for its own
    split_projection: bool = False  # converted from SPLIT_GRAPH (see ``graph``)
    # For microcontrollers: runs on TFLite Micro (the ``tflm`` extra); its arena is measured and
    # its C sources written beside it (export.formats.mcu).
    for_mcu: bool = False

    @property
    def converter(self) -> str:
        """The registry name a worker converts it by."""
        return self.family or self.name

    @property
    def graph(self) -> str:
        """The graph it is converted from: the int8 variant where the reservoir is int8 (its
        clipped drive), the split projection where asked (tflite-int16x8: 0.0076 max abs instead
        of 0.033, for 1.6x the size), else the float graph."""
        if self.split_projection:
            return SPLIT_GRAPH
        if self.recipe is not None:
            return INT8_GRAPH if self.recipe.of("reservoir") == INT8 else FLOAT_GRAPH
        return INT8_GRAPH if self.calibrated else FLOAT_GRAPH

    def with_recipe(self, recipe: Recipe, *, variant: bool = False) -> Format:
        """This recipe format built from ``recipe``; ``variant``: named after it (a sweep holds many)."""
        if not self.takes_recipe:
            raise ExportError(f"{self.name} has a fixed precision; recipes apply to {', '.join(RECIPE_FORMATS)}")
        stem, suffix = self.file.rsplit(".", 1)
        return dataclasses.replace(
            self, recipe=recipe, precision=recipe.tolerance_row,
            name=f"{self.name}-{recipe.tag}" if variant else self.name,
            file=f"{stem}_{recipe.tag}.{suffix}" if variant else self.file,
            description=f"{self.description}: {recipe.describe()}",
            calibrated=recipe.tolerance_row != FLOAT32, family=self.name,
            calibration_images=WIDE_CALIBRATION_IMAGES if INT16X8 in recipe.precisions else None,
        )


_TF2ONNX_NAMES = (
    "not byte-identical across runs: tf2onnx numbers the constants it generates "
    "differently from run to run; the graph and weights are the same"
)

TFLITE_FP32 = Format("tflite-fp32", "cllnn_fp32.tflite", LITERT, "float32",
                     "float32 weights and activations",
                     _tflite("float32"), (BUILTINS_ONLY,))
TFLITE_FP16 = Format("tflite-fp16", "cllnn_fp16.tflite", LITERT, "float16",
                     "float16 weights, float32 compute",
                     _tflite("float16"), (BUILTINS_ONLY,))
TFLITE_DYNAMIC = Format("tflite-dynamic", "cllnn_dynamic.tflite", LITERT, "dynamic-int8",
                        "int8 weights, activations quantized on the fly",
                        _tflite("dynamic-int8"), (BUILTINS_ONLY,))
TFLITE_INT8 = Format("tflite-int8", "cllnn_int8.tflite", LITERT, "int8",
                     "uint8 pixels in, int8 kernels (the first conv stage float32 by default), "
                     "int8 probabilities out",
                     _tflite("int8"), (BUILTINS_ONLY, RAW_UINT8_INPUT, INT8_AFTER_FRONT),
                     calibrated=True, calibration_methods=(MINMAX,))
ONNX_FP32 = Format("onnx-fp32", "cllnn_fp32.onnx", ONNXRUNTIME, "float32", "float32, via tf2onnx",
                   _onnx_float, (NO_LOOP,), out_of_process=True,
                   reproducible=False, reproducibility_note=_TF2ONNX_NAMES)
ONNX_INT8 = Format("onnx-int8", "cllnn_int8.onnx", ONNXRUNTIME, "int8",
                   "int8 QDQ, static calibration (ONNX Runtime quantization)",
                   _onnx_int8, (NO_LOOP,), calibrated=True, out_of_process=True,
                   reproducible=False, reproducibility_note=_TF2ONNX_NAMES,
                   calibration_methods=(MINMAX, ENTROPY, PERCENTILE, DISTRIBUTION))

TFLITE_INT16X8 = Format("tflite-int16x8", "cllnn_int16x8.tflite", LITERT, "int16x8",
                        "uint8 pixels in, int16 activations and int8 weights throughout (AI Edge Quantizer), "
                        "int16 probabilities out",
                        _tflite_recipe, (BUILTINS_ONLY, RAW_UINT8_INPUT, INTEGER_ONLY), calibrated=True,
                        calibration_methods=(MINMAX, MOVING_AVERAGE), calibration_images=WIDE_CALIBRATION_IMAGES,
                        recipe=Recipe.uniform(INT16X8), split_projection=True)
TFLITE_MIXED = Format("tflite-mixed", "cllnn_mixed.tflite", LITERT, INT8,
                      "uint8 pixels in, a precision per stage (AI Edge Quantizer)",
                      _tflite_recipe, (BUILTINS_ONLY, RAW_UINT8_INPUT), calibrated=True,
                      calibration_methods=(MINMAX, MOVING_AVERAGE), takes_recipe=True)
ONNX_MIXED = Format("onnx-mixed", "cllnn_mixed.onnx", ONNXRUNTIME, INT8,
                    "a precision per stage (ONNX Runtime QDQ, per-node settings)",
                    _onnx_recipe, (NO_LOOP,), calibrated=True, out_of_process=True,
                    reproducible=False, reproducibility_note=_TF2ONNX_NAMES,
                    calibration_methods=(MINMAX, ENTROPY, PERCENTILE, DISTRIBUTION), takes_recipe=True)

TFLM_INT8 = Format("tflm-int8", "cllnn_tflm_int8.tflite", TFLM, "int8",
                   "tflite-int8's file on TensorFlow Lite Micro's kernels, for microcontrollers: arena measured, "
                   "C sources in mcu/",
                   _tflite("int8"), (BUILTINS_ONLY, RAW_UINT8_INPUT, INT8_AFTER_FRONT),
                   calibrated=True, calibration_methods=(MINMAX,), for_mcu=True)

FORMATS: dict[str, Format] = {
    f.name: f for f in (TFLITE_FP32, TFLITE_FP16, TFLITE_DYNAMIC, TFLITE_INT8, TFLITE_INT16X8,
                        ONNX_FP32, ONNX_INT8, TFLM_INT8, TFLITE_MIXED, ONNX_MIXED)
}
RECIPE_FORMATS = tuple(name for name, f in FORMATS.items() if f.takes_recipe)


def parse_formats(names: str | tuple[str, ...] | list[str] | None) -> tuple[Format, ...]:
    """``"tflite-int8,onnx-fp32"`` (or a list of names) -> formats; None or "all" -> every format of a
    fixed precision (the "-mixed" formats are built when named, from ``[export] recipe``), the
    microcontroller format where its runtime (``tflite-micro``) is installed."""
    if names is None:
        names = ALL
    names = list(format_names(names) or ())
    if names == [ALL]:
        return tuple(f for f in FORMATS.values() if not f.takes_recipe and (available() or not f.for_mcu))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ExportError(
            f"unknown format(s) {unknown or names}; choose from {', '.join(FORMATS)} (or '{ALL}')"
        )
    chosen = tuple(FORMATS[n] for n in dict.fromkeys(names))
    if any(f.for_mcu for f in chosen) and not available():
        raise ExportError(f"{', '.join(f.name for f in chosen if f.for_mcu)} runs on TensorFlow Lite Micro: "
                          f"{INSTALL_HINT}")
    return chosen


def formats_help() -> str:
    """The format names for ``--help``, from the registry."""
    return ", ".join(FORMATS)


def formats_for(cfg: Config) -> tuple[Format, ...]:
    """The formats ``cfg.export.formats`` names, the recipe formats built from ``[export] recipe``."""
    recipe = Recipe.parse(cfg.export.recipe)
    return tuple(f.with_recipe(recipe) if f.takes_recipe else f for f in parse_formats(cfg.export.formats))


def calibration_for(fmt: Format, cfg: Config) -> Calibration:
    """How ``fmt`` calibrates: ``[export.calibration.<format>]`` over its defaults (its first
    method; its own image count, else ``export.calibration_size``)."""
    chosen = cfg.export.calibration.get(fmt.name) or cfg.export.calibration.get(fmt.converter) or {}
    method = chosen.get("method", fmt.calibration_methods[0] if fmt.calibration_methods else MINMAX)
    if fmt.calibrated and method not in fmt.calibration_methods:
        raise ExportError(f"{fmt.name} calibrates with {', '.join(fmt.calibration_methods)}; "
                          f"[export.calibration.{fmt.converter}] asks for {method!r}")
    images = chosen.get("images", fmt.calibration_images or cfg.export.calibration_size)
    return Calibration(method=method, images=images)
