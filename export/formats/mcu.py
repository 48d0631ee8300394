"""A file for microcontrollers: its memory budget measured on TFLite Micro, and its C sources.

``describe_mcu`` measures what a board must give the model (``McuRecord``):
the flash its bytes take, the smallest tensor arena TFLM runs it in
(``runtime.backends.tflm.smallest_arena``) and what to allocate (that plus
``runtime.backends.tflm.arena_margin``), and each stage's peak activation working
set. It then writes ``mcu/cllnn_model.h`` and ``mcu/cllnn_model.cc``: the
model as an aligned ``const unsigned char[]`` with its length, the arena to
allocate, and the input's and output's shape and quantization, so firmware
needs nothing else from this toolkit. The record lists both files with their
SHA-256; the manifest carries it (``details.mcu``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cllnn_edge.config import Config
from export.errors import ConversionError, ExportError
from export.formats.precision import stage_of
from export.graph.stages import STAGES
from runtime.atomic import write_bytes_atomic
from runtime.deploy.boards import BudgetError, MemoryBudget, budget_for
from runtime.errors import ModelLoadError
from runtime.backends.litert import new_interpreter
from runtime.artifacts.manifest import (
    MCU_DIR,
    ArtifactEntry,
    ListedFile,
    McuRecord,
    TensorSpec,
    sha256_bytes,
    sha256_file,
)
from runtime.backends.tflite_check import op_details, tensor_details
from runtime.backends.tflm import arena_margin, smallest_arena

HEADER, SOURCE = "cllnn_model.h", "cllnn_model.cc"
ARRAY, LENGTH = "cllnn_model", "cllnn_model_len"  # the C names firmware links against
BYTES_PER_LINE = 16


FITS_CHECK = "fits_budget"  # the check a TFLM file gets when a budget is given


def memory_budget(cfg: Config) -> MemoryBudget | None:
    """The budget ``[export] board / flash_kib / ram_kib`` name (0: not given), or None."""
    try:
        return budget_for(cfg.export.board or None, cfg.export.flash_kib or None, cfg.export.ram_kib or None)
    except BudgetError as exc:
        raise ExportError(str(exc)) from exc


def with_mcu_record(entry: ArtifactEntry, path: Path, root: Path, budget: MemoryBudget | None) -> ArtifactEntry:
    """``entry`` with its ``mcu`` record (``describe_mcu``) and, given a budget, the check that it fits."""
    try:
        mcu = describe_mcu(path, root, entry.inputs[0], entry.outputs[0])
    except ModelLoadError as exc:
        raise ConversionError(f"{entry.format}: {exc}") from exc
    checks = dict(entry.details.checks)
    if budget is not None:
        checks[FITS_CHECK] = budget.check(mcu)
    return replace(entry, details=replace(entry.details, mcu=mcu, checks=checks))


def describe_mcu(path: Path, root: Path, inputs: TensorSpec, outputs: TensorSpec) -> McuRecord:
    """Measure ``path`` on TFLM and write its C sources into ``root / MCU_DIR`` (``root``: the
    directory the manifest will sit in; ``inputs`` / ``outputs``: its specs, batch 1)."""
    data = path.read_bytes()
    minimum = smallest_arena(data, path.name)
    record = McuRecord(flash_bytes=len(data), arena_min_bytes=minimum, arena_bytes=minimum + arena_margin(minimum),
                       stage_activation_bytes=stage_activation_bytes(data, path.name))
    sources = write_c_sources(root / MCU_DIR, data, path.name, record, inputs, outputs)
    listed = tuple(ListedFile(file=f.relative_to(root).as_posix(), sha256=sha256_file(f), size=f.stat().st_size)
                   for f in sources)
    return replace(record, sources=listed)


def stage_activation_bytes(data: bytes, name: str) -> dict[str, int]:
    """Each stage's (``export.graph.stages.STAGES``) peak working set, in bytes at batch 1: over its
    ops, the largest sum of one op's activation inputs and outputs (weights live in flash).

    An op is in the stage its output's name says; an op named after none (the
    input's DEQUANTIZE, the final SOFTMAX) joins the stage before it, or the
    first stage. TFLM's arena holds at least the largest of these at once.
    """
    interpreter = new_interpreter(data, name, None, delegates=False)
    ops = op_details(interpreter, name)
    produced = {int(i) for i in interpreter._interpreter.InputIndices()}
    produced.update(int(i) for op in ops for i in op["outputs"])
    sizes: dict[int, int] = {}

    def size(index: int) -> int:
        if index not in sizes:
            details = tensor_details(interpreter, index, name)
            sizes[index] = int(np.prod(details["shape"], dtype=np.int64)) * np.dtype(details["dtype"]).itemsize
        return sizes[index]

    peaks: dict[str, int] = {}
    current = STAGES[0]
    for op in ops:
        outputs = [int(i) for i in op["outputs"]]
        named = [stage_of(str(tensor_details(interpreter, i, name)["name"])) for i in outputs]
        current = next((stage for stage in named if stage), current)
        working = sum(size(int(i)) for i in op["inputs"] if int(i) in produced) + sum(size(i) for i in outputs)
        peaks[current] = max(peaks.get(current, 0), working)
    return {stage: peaks[stage] for stage in STAGES if stage in peaks}


def write_c_sources(out: Path, data: bytes, source_name: str, record: McuRecord, inputs: TensorSpec,
                    outputs: TensorSpec) -> tuple[Path, Path]:
    """``cllnn_model.h`` and ``cllnn_model.cc`` under ``out``, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    header = write_bytes_atomic(out / HEADER, header_text(source_name, data, record, inputs, outputs).encode())
    source = write_bytes_atomic(out / SOURCE, source_text(source_name, data).encode())
    return header, source


def _banner(source_name: str, data: bytes) -> str:
    return (f"// Generated by cllnn-edge (cllnn-export convert --formats tflm-int8) from {source_name},\n"
            f"// SHA-256 {sha256_bytes(data)}. Do not edit: convert again.\n")


def _c_float(value: float) -> str:
    """A float32 as a C literal that reads back to the same float32."""
    text = f"{float(np.float32(value)):.9g}"
    return f"{text}f" if any(c in text for c in ".en") else f"{text}.0f"


def header_text(source_name: str, data: bytes, record: McuRecord, inputs: TensorSpec, outputs: TensorSpec) -> str:
    """The header's text: the array's declaration and every figure firmware needs."""
    _, height, width, channels = inputs.shape
    guard = "CLLNN_MODEL_H_"
    lines = [
        _banner(source_name, data),
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "// The model's flatbuffer, for tflite::GetModel(cllnn_model); 16-byte aligned, as TFLM requires.",
        f"extern const unsigned char {ARRAY}[];",
        f"extern const unsigned int {LENGTH};",
        f"#define CLLNN_MODEL_BYTES {len(data)}u",
        "",
        "// Tensor arena: the smallest TensorFlow Lite Micro ran the model in (reference kernels, measured by",
        "// cllnn-edge), plus a margin (10%, at least 1 KiB) for optimized kernels' scratch buffers.",
        f"#define CLLNN_ARENA_MIN_BYTES {record.arena_min_bytes}u",
        f"#define CLLNN_ARENA_MARGIN_BYTES {record.arena_margin_bytes}u",
        f"#define CLLNN_ARENA_BYTES {record.arena_bytes}u  // allocate this, 16-byte aligned",
        "",
        f"// Input: one image, {height}x{width}x{channels} (height, width, channels last), {inputs.dtype}:",
        "// raw pixel values 0..255 (scale 1, zero point 0); the model standardises them itself.",
        f"#define CLLNN_INPUT_HEIGHT {height}",
        f"#define CLLNN_INPUT_WIDTH {width}",
        f"#define CLLNN_INPUT_CHANNELS {channels}",
        f"#define CLLNN_INPUT_SCALE {_c_float(_scale(inputs))}",
        f"#define CLLNN_INPUT_ZERO_POINT ({_zero_point(inputs)})",
        "",
        f"// Output: class probabilities, {outputs.dtype}; probability = scale * (q - zero_point).",
        f"#define CLLNN_NUM_CLASSES {outputs.shape[-1]}",
        f"#define CLLNN_OUTPUT_SCALE {_c_float(_scale(outputs))}",
        f"#define CLLNN_OUTPUT_ZERO_POINT ({_zero_point(outputs)})",
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)


def _scale(spec: TensorSpec) -> float:
    return 1.0 if spec.scale is None else spec.scale


def _zero_point(spec: TensorSpec) -> int:
    return 0 if spec.zero_point is None else spec.zero_point


def source_text(source_name: str, data: bytes) -> str:
    """The source's text: the bytes of the model as an aligned array, and its length."""
    hexes = np.char.add("0x", np.char.zfill(np.char.lower(
        np.char.mod("%x", np.frombuffer(data, np.uint8).astype(np.int32))), 2))
    rows = [", ".join(hexes[start:start + BYTES_PER_LINE]) for start in range(0, len(hexes), BYTES_PER_LINE)]
    body = ",\n".join(f"    {row}" for row in rows)
    return (f"{_banner(source_name, data)}\n#include \"{HEADER}\"\n\n"
            f"alignas(16) const unsigned char {ARRAY}[] = {{\n{body}\n}};\n"
            f"const unsigned int {LENGTH} = {len(data)};\n")


def read_c_array(text: str) -> bytes:
    """The bytes a ``cllnn_model.cc`` holds (for checking it against the ``.tflite`` file)."""
    start, end = text.index("{", text.index(f"{ARRAY}[]")) + 1, text.index("};")
    return bytes(int(token, 16) for token in text[start:end].replace("\n", " ").split(",") if token.strip())


def read_header(text: str) -> dict[str, Any]:
    """``#define NAME VALUE`` of a ``cllnn_model.h`` -> {NAME: int or float}."""
    figures: dict[str, Any] = {}
    for line in text.splitlines():
        parts = line.split("//")[0].split()
        if len(parts) == 3 and parts[0] == "#define":
            value = parts[2].strip("()").rstrip("uf")
            figures[parts[1]] = float(value) if "." in value or "e" in value else int(value)
    return figures
