"""The C sources of a microcontroller file (``export.formats.mcu``): the array holds the file's bytes, the
header its measured figures, and a C++ compiler takes both. The measured figures of a real
export are checked in tests/e2e (test_main_job.py and test_mcu.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export.formats.mcu import ARRAY, HEADER, LENGTH, SOURCE, read_c_array, read_header, write_c_sources
from runtime.artifacts.manifest import McuRecord, TensorSpec

RECORD = McuRecord(flash_bytes=1000, arena_min_bytes=140_000, arena_bytes=154_000)
INPUT = TensorSpec("pixels", (1, 8, 12, 3), "uint8", 1.0, 0)
OUTPUT = TensorSpec("probs", (1, 5), "int8", 0.00390625, -128)


@pytest.fixture
def sources(tmp_path: Path) -> tuple[bytes, Path, Path]:
    data = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()  # not a multiple of 16
    header, source = write_c_sources(tmp_path / "mcu", data, "model.tflite", RECORD, INPUT, OUTPUT)
    return data, header, source


def test_the_array_holds_the_file_byte_for_byte_and_the_header_its_figures(sources: tuple[bytes, Path, Path]) -> None:
    data, header, source = sources
    assert (header.name, source.name) == (HEADER, SOURCE)
    assert read_c_array(source.read_text()) == data
    assert f"alignas(16) const unsigned char {ARRAY}[]" in source.read_text()
    assert f"const unsigned int {LENGTH} = 1000;" in source.read_text()
    assert read_header(header.read_text()) == {
        "CLLNN_MODEL_BYTES": 1000, "CLLNN_ARENA_MIN_BYTES": 140_000, "CLLNN_ARENA_MARGIN_BYTES": 14_000,
        "CLLNN_ARENA_BYTES": 154_000, "CLLNN_INPUT_HEIGHT": 8, "CLLNN_INPUT_WIDTH": 12, "CLLNN_INPUT_CHANNELS": 3,
        "CLLNN_INPUT_SCALE": 1.0, "CLLNN_INPUT_ZERO_POINT": 0, "CLLNN_NUM_CLASSES": 5,
        "CLLNN_OUTPUT_SCALE": 0.00390625, "CLLNN_OUTPUT_ZERO_POINT": -128}
    assert "SHA-256 " in header.read_text() and "model.tflite" in header.read_text()


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler on this machine")
def test_a_cpp_compiler_takes_the_sources_and_the_array_is_as_long_as_the_file(
    sources: tuple[bytes, Path, Path], tmp_path: Path
) -> None:
    data, header, source = sources
    main = tmp_path / "main.cc"
    main.write_text(f'#include "{HEADER}"\n#include <cstdint>\n'
                    f"static_assert(CLLNN_ARENA_BYTES == CLLNN_ARENA_MIN_BYTES + CLLNN_ARENA_MARGIN_BYTES, \"\");\n"
                    f"alignas(16) static uint8_t arena[CLLNN_ARENA_BYTES];\n"
                    f"int main() {{ return ({LENGTH} == CLLNN_MODEL_BYTES && arena[0] == 0 && "
                    f"(reinterpret_cast<uintptr_t>({ARRAY}) % 16) == 0 && CLLNN_INPUT_SCALE == 1.0f) ? 0 : 1; }}\n")
    binary = tmp_path / "check"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(header.parent), str(main),
                    str(source), "-o", str(binary)], check=True, capture_output=True, timeout=120)
    assert subprocess.run([str(binary)], timeout=30).returncode == 0
    symbols = subprocess.run(["nm", "-S", "--defined-only", str(binary)], capture_output=True, text=True).stdout
    size = next(int(line.split()[1], 16) for line in symbols.splitlines() if line.endswith(f" {ARRAY}"))
    assert size == len(data)


def test_a_float_scale_is_written_so_it_reads_back_exactly(tmp_path: Path) -> None:
    odd = TensorSpec("probs", (1, 10), "int8", float(np.float32(1 / 3)), -1)
    header, _ = write_c_sources(tmp_path, b"\x00" * 16, "m.tflite", RECORD, INPUT, odd)
    figures = read_header(header.read_text())
    assert np.float32(figures["CLLNN_OUTPUT_SCALE"]) == np.float32(1 / 3)
    assert figures["CLLNN_OUTPUT_ZERO_POINT"] == -1
