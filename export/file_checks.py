"""Checks on what an exported file is, beyond how close its outputs are: builtin kernels only,
no loops, raw uint8 pixels in, no float kernel inside. The format registry says which apply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runtime
from runtime.manifest import CheckRecord

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


def float_kernels(path: Path) -> list[str]:
    """Ops of a TFLite file that read or write a float tensor."""
    return sorted(
        {
            op
            for op, in_types, out_types in runtime.tflite_op_dtypes(path)
            if any(t in FLOAT_TYPES for t in (*in_types, *out_types))
        }
    )


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


def _integer_only(path: Path, model: runtime.RuntimeModel) -> tuple[bool, Any]:
    found = float_kernels(path)
    return not found, found


BUILTINS_ONLY = FileCheck("builtins_only", "builtin TFLite kernels only", _builtins_only)
NO_LOOP = FileCheck("no_loop", "no Loop / Scan / If nodes", _no_loop)
RAW_UINT8_INPUT = FileCheck("raw_uint8_input", "uint8 input, scale 1, zero point 0", _raw_uint8_input)
INTEGER_ONLY = FileCheck("integer_only", "no float kernel inside", _integer_only)
