"""What the end-to-end tests share: the CLI, the gates they apply and how they compare a run's files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from cllnn_edge.model import load_trained
import runtime
from runtime.artifacts.manifest import load_manifest, sha256_file
from runtime.backends.tflm import available as tflm_available

CLI = str(Path(sys.executable).parent / "cllnn-export")
# The main job's devices in CI: the Raspberry Pi 4's and 5's CPUs under qemu-user (``--target``), each given
# the int8, dynamic-range and one float file (``--target-formats``): all eight took 2 min 14 s of verify per
# device under qemu (docs/targets.md), over CI's budget; these three are what a Pi ships.
EMULATED = {"a72": ("cortex-a72", "arm64 NEON (no dotprod)"), "a76": ("cortex-a76", "arm64 dotprod")}
EMULATED_FORMATS = ("tflite-int8", "tflite-dynamic", "tflite-fp32")
EMULATED_TARGETS = (*(arg for name, (cpu, _) in EMULATED.items() for arg in ("--target", f"{name}=emulated:{cpu}")),
                    "--target-formats", ",".join(EMULATED_FORMATS))
# What `cllnn-export run` exports by default ("all"): tflm-int8 where the tflm extra is installed (CI).
ALL_FORMATS = frozenset({"tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "tflite-int16x8",
                         "onnx-fp32", "onnx-int8", *(["tflm-int8"] if tflm_available() else [])})


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=1800)


def keras_probs(model_path: Path, images: np.ndarray) -> np.ndarray:
    model = load_trained(model_path)
    return model.predict(images.astype(np.float32)[..., None], verbose=0, batch_size=256)


# The quantized rows of the gate for a model trained 3 epochs, as .github/workflows/parity.yml
# gates one. Such a model has many test images near a class boundary, and int8 rounding flips
# some of them: over model seeds 0-4 (benchmarks/SPREAD.md, case t1, x86 AVX-512 VNNI,
# 2026-11-29) int8 TFLite disagreed with Keras on 1-6 of the 1,000 test images, int8 ONNX on
# 1-9, dynamic-range on 0-1; the default limit (min_top1 0.99: at most 10) has one image of
# slack at the worst seed, and another CPU class trains another model from the same seed (as
# a change of seed does). 0.98 allows 20: twice the worst seen. A fully trained model is gated
# at the default 0.99 (README: 99.8% agreement after the seed's 10 epochs).
# int16x8 (tflite-int16x8) files of 3-epoch models agreed with Keras on the top-1 class of all
# 1,000 test images at T = 1 (999 at T = 3 and 9; model seeds 0-2, x86 AVX-512 VNNI, 2026-11-29):
# the row's own 0.995 leaves five images of slack, for the model another CPU class trains.
BRIEF_TRAINING_GATE = {  # precision -> the limits it relaxes
    "int8": {"min_top1": 0.98},
    "dynamic-int8": {"min_top1": 0.98},
}


def gate_flags() -> list[str]:
    """``BRIEF_TRAINING_GATE`` as ``cllnn-export parity`` flags (as the workflow passes them)."""
    return [flag for precision, limits in BRIEF_TRAINING_GATE.items() for limit, value in limits.items()
            for flag in ("--tolerance", f"{precision}.{limit}={value}")]


def gate_config(path: Path) -> Path:
    """``BRIEF_TRAINING_GATE`` as a TOML file, for commands that take --config."""
    path.write_text("".join(f"[tolerances.{precision}]\n" + "".join(f"{k} = {v}\n" for k, v in limits.items())
                            for precision, limits in BRIEF_TRAINING_GATE.items()))
    return path


# Of the 1,000 test images, int8 files of a 3-epoch model disagree with Keras on the top-1 class
# of (over model seeds 0-4, x86 AVX-512 VNNI, 2026-11-29, benchmarks/SPREAD.md):
# T = 1: 1-6 (TFLite), 1-9 (ONNX); T = 3: 3-12, 4-13; T = 9: 5-20, 5-11; dynamic-range 0-3.
# Another CPU class trains another model from the same seed, as a change of seed does. The
# export-time floor (convert_min_top1 0.98: at most 20) is met with no slack at T = 9; these
# tests allow 50 (0.95), 2.5 times the worst seen, and say so to convert for T > 1.
MIN_QUANTIZED_AGREEMENT = 0.95
LONG_SEQUENCE_GATE = (f"[tolerances.int8]\nconvert_min_top1 = {MIN_QUANTIZED_AGREEMENT}\n"
                      f"[tolerances.dynamic-int8]\nconvert_min_top1 = {MIN_QUANTIZED_AGREEMENT}\n")


def assert_formats_match(model_path: Path, artifacts: Path, images: np.ndarray) -> dict:
    reference = keras_probs(model_path, images)
    manifest = load_manifest(artifacts)
    sizes = {}
    for entry in manifest.artifacts:
        path = artifacts / entry.file
        assert sha256_file(path) == entry.sha256
        with runtime.load(path) as model:
            probs = model.predict(images)
        assert probs.shape == (len(images), 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-2)
        if entry.precision == "float32":
            assert np.abs(probs - reference).max() <= 1e-5, entry.format
        elif entry.precision == "float16":
            assert np.abs(probs - reference).max() <= 1e-2, entry.format
        else:
            agreeing = int(np.sum(probs.argmax(1) == reference.argmax(1)))
            assert agreeing >= MIN_QUANTIZED_AGREEMENT * len(images), (entry.format, agreeing)
        sizes[entry.format] = entry.size
    return sizes
