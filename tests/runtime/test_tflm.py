"""The TensorFlow Lite Micro backend (``runtime.backends.tflm``) on the tiny golden files: the same
``load`` / ``predict`` as LiteRT, the arena it needs, and what a manifest entry says.

These run where the ``tflm`` extra is installed (CI installs it); elsewhere the module is skipped."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the project's tomli dependency
    import tomli as tomllib

import runtime
from runtime.backends import tflm
from runtime.atomic import write_json_atomic
from runtime.errors import ModelClosedError, ModelLoadError
from runtime.artifacts.manifest import MANIFEST_NAME, Manifest, McuRecord, load_manifest
from runtime.checks.verify import verify
from tests.runtime.conftest import TinyModels
from tests.runtime.helpers import REPO, describe, run_python

tflite_micro = pytest.importorskip("tflite_micro", reason="the tflm extra is not installed")


def test_an_int8_file_runs_on_tflm_behind_the_same_interface(tiny: TinyModels) -> None:
    with runtime.load(tiny.int8_tflite, backend="tflm") as micro, runtime.load(tiny.int8_tflite) as lite:
        assert (micro.backend, lite.backend) == ("tflm", "litert")
        assert micro.input_spec.shape == (1, 28, 28, 1)  # TFLM runs the batch it was given: one image
        assert (micro.input_spec.dtype, micro.input_spec.scale, micro.input_spec.zero_point) == ("uint8", 1.0, 0)
        assert micro.ops == lite.ops
        batch = micro.predict(tiny.images)  # 64 images, run one at a time
        assert batch.shape == (len(tiny.images), 10) and batch.dtype == np.float32
        expected = lite.predict(tiny.images)
    # different kernels (TFLM's reference ones against XNNPACK's), the same int8 arithmetic
    assert np.abs(batch - expected).max() <= 2 / 256
    assert np.mean(batch.argmax(1) == expected.argmax(1)) >= 0.95
    assert np.mean(batch.argmax(1) == tiny.reference.argmax(1)) >= 0.9


def test_a_single_image_and_a_float_file(tiny: TinyModels) -> None:
    with runtime.load(tiny.fp32_tflite, backend="tflm") as model:
        one = model.predict(tiny.images[0])
        np.testing.assert_allclose(one[0], tiny.reference[0], atol=1e-5)


def test_the_smallest_arena_is_what_tflm_reports_and_one_below_it_fails_cleanly(
    tiny: TinyModels, capfd: pytest.CaptureFixture[str]
) -> None:
    data = tiny.int8_tflite.read_bytes()
    smallest = tflm.smallest_arena(data, "int8.tflite")
    assert smallest % tflm.ARENA_ALIGNMENT == 0
    interpreter = tflite_micro.runtime.Interpreter.from_bytes(data, arena_size=10 * len(data))
    interpreter.set_input(np.zeros((1, 28, 28, 1), np.uint8), 0)
    interpreter.invoke()
    capfd.readouterr()
    interpreter.print_allocations()  # TFLM's own account, on the C++ side's stderr
    reported = int(re.search(r"Arena allocation total (\d+) bytes", capfd.readouterr().err).group(1))
    assert reported <= smallest < reported + tflm.ARENA_ALIGNMENT

    with tflm.TFLMModel(tiny.int8_tflite, data, None, arena_bytes=smallest) as model:
        assert model.arena_bytes == smallest
        model.predict(tiny.images[:2])
    with pytest.raises(ModelLoadError, match=rf"tensor arena of {smallest - tflm.ARENA_ALIGNMENT:,} bytes.*"
                                             r"(?i:allocate)"):
        tflm.TFLMModel(tiny.int8_tflite, data, None, arena_bytes=smallest - tflm.ARENA_ALIGNMENT)


def test_without_a_recorded_arena_the_model_allocates_the_smallest_plus_the_margin(tiny: TinyModels) -> None:
    smallest = tflm.smallest_arena(tiny.int8_tflite.read_bytes())
    with runtime.load(tiny.int8_tflite, backend="tflm") as model:
        assert model.arena_bytes == smallest + tflm.arena_margin(smallest)


def test_the_margin_is_a_tenth_at_least_a_kib_in_whole_alignments() -> None:
    assert tflm.arena_margin(140_000) == 14_000
    assert tflm.arena_margin(2_000) == 1_024
    assert tflm.arena_margin(140_001) == 14_016


def test_a_manifest_entry_for_tflm_loads_on_tflm_with_its_recorded_arena(
    tiny: TinyModels, artifacts: Path
) -> None:
    """cllnn-export convert records runtime "tflm" and the arena; load, verify and bench follow it."""
    manifest = load_manifest(artifacts)
    smallest = tflm.smallest_arena(tiny.int8_tflite.read_bytes())
    mcu = McuRecord(flash_bytes=tiny.int8_tflite.stat().st_size, arena_min_bytes=smallest,
                    arena_bytes=smallest + 4096)
    entries = tuple(replace(e, runtime="tflm", format="tflm-int8", details=replace(e.details, mcu=mcu))
                    if e.file == "int8.tflite" else e for e in manifest.artifacts)
    write_json_atomic(artifacts / MANIFEST_NAME, Manifest(entries, manifest.metadata, manifest.check_set).to_dict())
    with runtime.load(artifacts / "int8.tflite") as model:
        assert model.backend == "tflm" and model.arena_bytes == smallest + 4096
    report = verify(artifacts)
    result = next(r for r in report.results if r.file == "int8.tflite")
    assert result.format == "tflm-int8" and result.passed


def test_a_recorded_arena_too_small_fails_naming_it(tiny: TinyModels, artifacts: Path) -> None:
    manifest = load_manifest(artifacts)
    mcu = McuRecord(flash_bytes=1, arena_min_bytes=2048, arena_bytes=2048)
    entries = tuple(replace(e, runtime="tflm", details=replace(e.details, mcu=mcu))
                    if e.file == "int8.tflite" else e for e in manifest.artifacts)
    write_json_atomic(artifacts / MANIFEST_NAME, Manifest(entries, manifest.metadata, manifest.check_set).to_dict())
    with pytest.raises(ModelLoadError, match="int8.tflite: TensorFlow Lite Micro cannot run it in a tensor arena "
                                             "of 2,048 bytes"):
        runtime.load(artifacts / "int8.tflite")
    for crashing in (0, 16, 448):  # tflite-micro crashes the process under 464 bytes: refused before it runs
        with pytest.raises(ModelLoadError, match=f"arena of {crashing:,} bytes is below"):
            tflm.TFLMModel(tiny.int8_tflite, tiny.int8_tflite.read_bytes(), None, arena_bytes=crashing)


def test_a_file_that_is_not_tflite_is_refused_before_tflm_reads_it(tiny: TinyModels, tmp_path: Path) -> None:
    broken = tmp_path / "broken.tflite"
    data = bytearray(tiny.int8_tflite.read_bytes())
    broken.write_bytes(bytes(data[: len(data) // 2]))  # truncated: LiteRT's verifier refuses it
    with pytest.raises(ModelLoadError, match="broken.tflite"):
        runtime.load(broken, backend="tflm")
    with pytest.raises(ModelLoadError, match="expected a TFLite flatbuffer"):
        tflm.smallest_arena(tiny.int8_onnx.read_bytes(), "int8.onnx")


def test_closed_and_threads(tiny: TinyModels, tmp_path: Path) -> None:
    copy = tmp_path / "int8.tflite"
    shutil.copy(tiny.int8_tflite, copy)
    model = runtime.load(copy, backend="tflm", threads=2)
    assert model.threads == 1  # TFLM runs on one thread, whatever is asked
    model.close()
    with pytest.raises(ModelClosedError):
        model.predict(tiny.images[0])


def test_the_tflm_backend_needs_no_tensorflow_and_the_base_install_pulls_no_tflm(tiny: TinyModels) -> None:
    done = run_python("import sys, numpy as np, runtime\n"
                      "with runtime.load(sys.argv[1], backend='tflm') as model:\n"
                      "    model.predict(np.zeros((2, 28, 28), np.uint8))\n"
                      "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n",
                      str(tiny.int8_tflite))
    assert done.returncode == 0 and done.stdout.strip() == "[]", describe(done)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert "tflite-micro" not in base and "tensorflow" not in base and "keras" not in base
    assert any(r.startswith("tflite-micro") for r in project["optional-dependencies"]["tflm"])
    pulled = " ".join(importlib.metadata.requires("tflite-micro") or []).lower()
    assert "tensorflow" not in pulled  # the extra itself: numpy, flatbuffers, pyyaml
