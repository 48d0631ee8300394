"""Checks on what an exported file is, beyond how close its outputs are: builtin kernels only,
no loops, raw uint8 pixels in, int8 kernels after the first stage. The format registry says
which apply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runtime
from runtime.artifacts.manifest import CheckRecord

FLOAT_TYPES = ("float16", "float32", "float64")
LOOP_OPS = ("Loop", "Scan", "If")
FLEX_PREFIXES = ("Flex", "CUSTOM")


@dataclass(frozen=True)
class FileCheck:
    """A named property of a loaded file: ``measure`` returns (passed, the value found)."""

    name: str
    expected: str
    measure: Callable[[Path, runtime.RuntimeModel], tuple[bool, Any]]

    def __call__(self, path: Path, model: runtime.RuntimeModel) -> CheckRecord:
        passed, value = self.measure(path, model)
        return CheckRecord(passed=bool(passed), value=value, expected=self.expected)


def _reads_float(in_types: tuple[str, ...], out_types: tuple[str, ...]) -> bool:
    return any(t in FLOAT_TYPES for t in (*in_types, *out_types))


def float_kernels(path: Path) -> list[str]:
    """Ops of a TFLite file that read or write a float tensor."""
    return sorted({op for op, in_types, out_types in runtime.tflite_op_dtypes(path)
                   if _reads_float(in_types, out_types)})


def float_front(path: Path) -> tuple[list[str], list[str]]:
    """The float ops of a TFLite file before its first QUANTIZE of a float tensor (its float
    front), and those after it but for QUANTIZE, which an int8 file must not have."""
    ops = runtime.tflite_op_dtypes(path)
    end = next((k for k, (op, ins, _) in enumerate(ops)
                if op == "QUANTIZE" and any(t in FLOAT_TYPES for t in ins)), 0)
    return ([op for op, ins, outs in ops[:end] if _reads_float(ins, outs)],
            [op for op, ins, outs in ops[end:] if _reads_float(ins, outs) and op != "QUANTIZE"])


def _none_found(found: list[str]) -> tuple[bool, Any]:
    return not found, found


def _builtins_only(path: Path, model: runtime.RuntimeModel) -> tuple[bool, Any]:
    flex = sorted(op for op in model.ops if op.startswith(FLEX_PREFIXES))
    return not flex, flex


def _no_loop(path: Path, model: runtime.RuntimeModel) -> tuple[bool, Any]:
    loops = sorted(op for op in model.ops if op in LOOP_OPS)
    return not loops, loops


def _raw_uint8_input(path: Path, model: runtime.RuntimeModel) -> tuple[bool, Any]:
    spec = model.input_spec
    lossless = spec.dtype == "uint8" and spec.scale == 1.0 and spec.zero_point == 0
    return lossless, {"dtype": spec.dtype, "scale": spec.scale, "zero_point": spec.zero_point}


def _int8_after_front(path: Path, model: runtime.RuntimeModel) -> tuple[bool, Any]:
    front, after = float_front(path)
    passed = not after and front.count("CONV_2D") <= MAX_FRONT_CONVS and "FULLY_CONNECTED" not in front
    return passed, {"float_front": sorted(set(front)), "float_after_front": sorted(set(after))}


BUILTINS_ONLY = FileCheck("builtins_only", "builtin TFLite kernels only", _builtins_only)
NO_LOOP = FileCheck("no_loop", "no Loop / Scan / If nodes", _no_loop)
RAW_UINT8_INPUT = FileCheck("raw_uint8_input", "uint8 input, scale 1, zero point 0", _raw_uint8_input)
INTEGER_ONLY = FileCheck("integer_only", "no kernel reads or writes a float tensor between input and output",
                         lambda path, model: _none_found(float_kernels(path)))
MAX_FRONT_CONVS = 1  # the float front is the image's first stage (export.graph.unroll.FRONT_LAYERS) at most
INT8_AFTER_FRONT = FileCheck(
    "int8_after_front",
    "int8 kernels only, but for a float32 first stage (one convolution at most, no matmul) before them",
    _int8_after_front,
)
