"""Data of another size than MNIST's, end to end as a user runs it: scikit-learn's 8x8 digits
through ``cllnn-export run`` and the device runtime, and an RGB npz of five classes through
train -> convert -> parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import runtime
from cllnn_edge.data import load_splits
from runtime.artifacts.manifest import load_manifest
from tests.e2e.helpers import ALL_FORMATS, run_cli

pytestmark = pytest.mark.slow  # trains and converts

SMALL_MODEL = "[model]\nreservoir_dim = 128\nlstm_units = 32\n"


def test_sklearn_digits_run_exports_every_format_and_the_runtime_takes_8x8_pixels(tmp_path: Path) -> None:
    config = tmp_path / "digits.toml"
    config.write_text(SMALL_MODEL)
    out = tmp_path / "run"
    done = run_cli("run", "--data", "sklearn-digits", "--out", str(out), "--config", str(config))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    history = json.loads((out / "train" / "history.json").read_text())
    assert history["data"]["image_shape"] == [8, 8, 1] and history["config"]["model"]["image_shape"] == [8, 8, 1]
    assert history["final"]["test_accuracy"] > 0.9
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and len(parity["results"]) == len(ALL_FORMATS)
    assert (out / "report.html").is_file() or (out / "report.md").is_file()

    test = load_splits("sklearn-digits").test
    assert test.x.shape[1:] == (8, 8) and test.x.dtype == np.uint8
    manifest = load_manifest(out / "artifacts")
    assert {entry.format for entry in manifest.artifacts} == ALL_FORMATS
    for entry in manifest.artifacts:
        assert entry.inputs[0].shape[1:] == (8, 8, 1)
        with runtime.load(out / "artifacts" / entry.file) as model:
            probs = model.predict(test.x)  # uint8 (N, 8, 8), as the data set gives them
            assert model.image_shape == (8, 8) and probs.shape == (len(test), 10)
            assert float(np.mean(probs.argmax(1) == test.y)) > 0.85, entry.format
            with pytest.raises(runtime.InputError, match=r"expected images shaped \(8, 8\), \(N, 8, 8\)"):
                model.predict(np.zeros((1, 28, 28), np.uint8))


def _five_colour_classes(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """16x16 RGB noise with one bright square per class, at a place and in a channel of its own."""
    labels = rng.permutation(np.arange(count) % 5)
    images = rng.integers(0, 60, (count, 16, 16, 3))
    for image, label in zip(images, labels):
        row, column = divmod(int(label), 3)
        image[2 + 6 * row : 8 + 6 * row, 2 + 4 * column : 8 + 4 * column, label % 3] += 180
    return images.astype(np.uint8), labels


def test_an_rgb_npz_of_five_classes_trains_converts_and_passes_parity(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_train, y_train = _five_colour_classes(600, rng)
    x_test, y_test = _five_colour_classes(200, rng)
    data = tmp_path / "rgb.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = tmp_path / "rgb.toml"
    config.write_text("[model]\nreservoir_dim = 64\nlstm_units = 16\nconv_filters = [8, 16]\n[train]\nepochs = 8\n"
                      '[export]\nformats = ["tflite-fp32", "tflite-int16x8", "onnx-int8"]\n')
    model = tmp_path / "train" / "model.keras"
    steps = [("train", "--data", str(data), "--out", str(model.parent), "--config", str(config)),
             ("convert", str(model), "--out", str(tmp_path / "artifacts"), "--config", str(config)),
             ("parity", str(model), str(tmp_path / "artifacts"), "--data", str(data), "--config", str(config),
              "--json", str(tmp_path / "parity.json"))]
    for step in steps:
        done = run_cli(*step)
        assert done.returncode == 0, (step[0], done.stdout[-3000:] + done.stderr[-3000:])
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["passed"] and {r["format"] for r in parity["results"]} == {"tflite-fp32", "tflite-int16x8",
                                                                             "onnx-int8"}
    assert parity["reference_accuracy"] > 0.9
    for entry in load_manifest(tmp_path / "artifacts").artifacts:
        assert entry.inputs[0].shape[1:] == (16, 16, 3)
        with runtime.load(tmp_path / "artifacts" / entry.file) as loaded:
            assert loaded.predict(x_test[0]).shape == (1, 5)  # one (H, W, 3) image
