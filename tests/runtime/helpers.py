"""Run Python in a fresh process: crash-prone loads and import-isolation checks must not share ours."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import runtime
from runtime.atomic import write_json_atomic
from runtime.artifacts.checkset import CHECK_SET_NAME, CheckSet, write_check_set
from runtime.artifacts.manifest import MANIFEST_NAME, ArtifactEntry, Manifest, sha256_file

if TYPE_CHECKING:
    from tests.runtime.conftest import TinyModels

REPO = Path(__file__).resolve().parents[2]

# Loads a model and reports a runtime error as "<ErrorClass>: <message>" with exit code 3.
LOAD_SCRIPT = """
import sys
import numpy as np
import runtime
try:
    with runtime.load(sys.argv[1]) as model:
        model.predict(np.zeros((2, 28, 28), np.uint8))
except (runtime.ModelLoadError, runtime.ManifestError) as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(3)
print("LOADED")
"""


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this interpreter; a negative return code means it died from a signal."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-2000:]}"


# An export directory of the tiny models, as convert leaves one (tests of verify and select).
FILES = {"fp32.tflite": ("tflite-fp32", "float32"), "int8.tflite": ("tflite-int8", "int8"),
         "fp32.onnx": ("onnx-fp32", "float32"), "int8.onnx": ("onnx-int8", "int8")}
# The tiny int8 files are calibrated on 32 blobs: the table recorded at "export" lowers the int8
# floor so the good files pass; verify must read it from the manifest's config.
EXPORTED_TOLERANCES = {"int8": {"min_top1": 0.8, "max_accuracy_drop": 0.2}}


def manifest_entry(path: Path, source: Path, fmt: str, precision: str) -> ArtifactEntry:
    """The manifest entry of ``path``, a copy of ``source`` (read where no manifest lies beside it)."""
    with runtime.load(source) as model:
        backend, inputs, outputs = model.backend, (model.input_spec,), model.output_specs
    return ArtifactEntry(file=path.name, format=fmt, runtime=backend, precision=precision,
                         sha256=sha256_file(path), size=path.stat().st_size, inputs=inputs, outputs=outputs)


def write_artifacts(tiny: TinyModels, out: Path) -> Path:
    """``out`` as convert leaves it: the ``FILES``, check_set.npz and manifest.json listing both."""
    out.mkdir()
    sources = {"fp32.tflite": tiny.fp32_tflite, "int8.tflite": tiny.int8_tflite,
               "fp32.onnx": tiny.fp32_onnx, "int8.onnx": tiny.int8_onnx}
    entries = []
    for name, (fmt, precision) in FILES.items():
        shutil.copy(sources[name], out / name)
        entries.append(manifest_entry(out / name, sources[name], fmt, precision))
    labels = tiny.reference.argmax(1).astype(np.int64)
    labels[::8] = (labels[::8] + 1) % 10  # some wrong, so accuracy is not trivially 1
    record = write_check_set(out / CHECK_SET_NAME, CheckSet(tiny.images, labels, {"output": tiny.reference}),
                             source="tiny", split="test")
    manifest = Manifest(tuple(entries), {"config": {"tolerances": EXPORTED_TOLERANCES},
                                         "source_model": {"file": "tiny.keras"},
                                         "versions": {"tensorflow": "tiny"}}, check_set=record)
    write_json_atomic(out / MANIFEST_NAME, manifest.to_dict())
    return out
