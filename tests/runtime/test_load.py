"""load(): backend by content, metadata, op listings, threads, and the manifest check."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.artifacts.manifest import ArtifactEntry, Manifest, sha256_file
from tests.runtime.conftest import TinyModels


@pytest.mark.parametrize(
    ("name", "suffix", "backend"),
    [
        ("fp32_tflite", ".tflite", "litert"),
        ("fp32_tflite", ".onnx", "litert"),  # content wins over a wrong suffix
        ("fp32_tflite", ".bin", "litert"),
        ("fp32_onnx", ".onnx", "onnxruntime"),
        ("fp32_onnx", ".tflite", "onnxruntime"),
        ("fp32_onnx", "", "onnxruntime"),
    ],
)
def test_backend_is_chosen_by_content(
    tiny: TinyModels, tmp_path: Path, name: str, suffix: str, backend: str
) -> None:
    copy = tmp_path / f"model{suffix}"
    shutil.copyfile(tiny.all()[name], copy)
    with runtime.load(copy) as model:
        assert model.backend == backend
        assert model.format == ("tflite" if backend == "litert" else "onnx")
        np.testing.assert_allclose(model.predict(tiny.images[:2]), tiny.reference[:2], atol=1e-5)


def test_a_backend_asked_for_must_suit_the_content(tiny: TinyModels) -> None:
    with pytest.raises(ValueError,
                       match="backend must be one of litert, onnxruntime, tflm, tflite-runtime or None, got 'tpu'"):
        runtime.load(tiny.int8_tflite, backend="tpu")
    with pytest.raises(runtime.ModelLoadError,
                       match="a TFLite file runs on litert, tflite-runtime or tflm, not onnxruntime"):
        runtime.load(tiny.int8_tflite, backend="onnxruntime")
    with pytest.raises(runtime.ModelLoadError, match="not a TFLite flatbuffer, so it cannot run on tflm"):
        runtime.load(tiny.int8_onnx, backend="tflm")
    with runtime.load(tiny.int8_tflite, backend="litert") as model:
        assert model.backend == "litert"


def test_tflm_without_its_package_says_how_to_install_it(
    tiny: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # as where the tflm extra is not installed
    with pytest.raises(runtime.ModelLoadError, match=r"needs tflite-micro: pip install 'cllnn-edge\[tflm\]'"):
        runtime.load(tiny.int8_tflite, backend="tflm")


def test_metadata(tiny: TinyModels) -> None:
    with runtime.load(tiny.int8_tflite, threads=1) as model:
        assert model.path == tiny.int8_tflite
        assert model.threads == 1
        assert model.manifest_entry is None
        assert model.input_spec.shape == (-1, 28, 28, 1)
        assert model.output_spec.shape == (-1, 10)
        assert (model.image_shape, model.num_classes) == ((28, 28), 10)
        assert "uint8[-1, 28, 28, 1]" in repr(model) and "open" in repr(model)
    with runtime.load(tiny.fp32_onnx) as model:
        assert model.input_spec == runtime.TensorSpec("pixels", (-1, 28, 28, 1), "float32")
        assert model.output_spec.dtype == "float32" and model.output_spec.shape == (-1, 10)
    assert "closed" in repr(model)


def test_tflite_ops_are_listed_without_the_delegate(tiny: TinyModels) -> None:
    with runtime.load(tiny.int8_tflite) as model:
        model.predict(tiny.images[:1])  # XNNPACK has now replaced nodes in the serving interpreter
        ops = model.ops
    assert "DELEGATE" not in ops
    assert ops["FULLY_CONNECTED"] == 1 and ops["SOFTMAX"] == 1 and ops["QUANTIZE"] == 1


@pytest.mark.parametrize("name", ["fp32_onnx", "int8_onnx"])
def test_onnx_ops_match_the_onnx_package(tiny: TinyModels, name: str) -> None:
    onnx = pytest.importorskip("onnx")
    path = tiny.all()[name]
    expected = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    with runtime.load(path) as model:
        assert model.ops == dict(expected)
    if name == "int8_onnx":
        assert model.ops["QuantizeLinear"] > 0 and model.ops["DequantizeLinear"] > 0


def test_int8_tflite_has_no_float_kernel(tiny: TinyModels) -> None:
    ops = runtime.tflite_op_dtypes(tiny.int8_tflite)
    assert ops[0].op == "QUANTIZE" and ops[0].inputs == ("uint8",)
    assert ops[-1].outputs == ("int8",)
    floats = [op for op in ops if "float32" in op.inputs + op.outputs]
    assert floats == []
    with runtime.load(tiny.int8_tflite) as model:
        assert isinstance(model, runtime.LiteRTModel)
        assert model.op_dtypes() == ops


def test_float_tflite_reports_float_kernels(tiny: TinyModels) -> None:
    ops = runtime.tflite_op_dtypes(tiny.fp32_tflite)
    fully_connected = next(op for op in ops if op.op == "FULLY_CONNECTED")
    assert fully_connected.inputs[:2] == ("float32", "float32")
    assert fully_connected.outputs == ("float32",)


def test_tflite_op_dtypes_refuses_other_files(tiny: TinyModels) -> None:
    with pytest.raises(
        runtime.ModelLoadError, match=r"expected a TFLite flatbuffer \('TFL3' at bytes 4..8\)"
    ):
        runtime.tflite_op_dtypes(tiny.fp32_onnx)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["fp32_tflite", "int8_onnx"])
def test_threads(tiny: TinyModels, name: str, threads: int) -> None:
    with runtime.load(tiny.all()[name], threads=threads) as model:
        assert model.predict(tiny.images[:3]).shape == (3, 10)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_threads(tiny: TinyModels, threads: object) -> None:
    with pytest.raises(ValueError, match=r"threads must be a positive int or None, got"):
        runtime.load(tiny.fp32_tflite, threads=threads)  # type: ignore[arg-type]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(runtime.ModelLoadError, match=r"model file not found: .*nothing.tflite"):
        runtime.load(tmp_path / "nothing.tflite")


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        (b"", ".tflite", r"expected a TFLite flatbuffer \(b'TFL3' at bytes 4..8\) or an ONNX model"),
        (b"not a model at all, just text", ".onnx", r"cannot load it as ONNX: ONNX protobuf is malformed"),
        (b"\x00\x00\x00\x00TFL3", ".tflite", r"flatbuffer offset 0 points outside|root|corrupt"),
    ],
)
def test_non_models_in_process(tmp_path: Path, content: bytes, suffix: str, match: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(runtime.ModelLoadError, match=match):
        runtime.load(path)


# -- manifest -----------------------------------------------------------------------------
def _write_manifest(directory: Path, *models: Path) -> Path:
    entries = []
    for model in models:
        with runtime.load(model, manifest=None) as loaded:
            entries.append(
                ArtifactEntry(
                    file=model.name,
                    format=loaded.format,
                    runtime=loaded.backend,
                    precision="float32",
                    sha256=sha256_file(model),
                    size=model.stat().st_size,
                    inputs=(loaded.input_spec,),
                    outputs=(loaded.output_spec,),
                    ops=loaded.ops,
                )
            )
    path = directory / "manifest.json"
    path.write_text(json.dumps(Manifest(artifacts=tuple(entries)).to_dict(), indent=2))
    return path


@pytest.fixture
def export_dir(tiny: TinyModels, tmp_path: Path) -> Path:
    directory = tmp_path / "export"
    directory.mkdir()
    copies = [
        shutil.copyfile(tiny.all()[name], directory / tiny.all()[name].name)
        for name in ("int8_tflite", "fp32_onnx")
    ]
    _write_manifest(directory, *copies)
    return directory


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("file", ["int8.tflite", "fp32.onnx"])
def test_manifest_beside_the_file_is_checked(export_dir: Path, file: str, tiny: TinyModels) -> None:
    path = export_dir / file
    with runtime.load(path) as model:
        assert model.manifest_entry is not None
        assert model.manifest_entry.sha256 == sha256_file(path)
        assert model.predict(tiny.images[:2]).shape == (2, 10)
    _flip_byte(path, path.stat().st_size // 2)  # inside the weights: the file still parses
    with pytest.raises(
        runtime.ManifestError, match=r"does not match its manifest: SHA-256 .* refusing to load"
    ):
        runtime.load(path)


def test_explicit_manifest(export_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    model = shutil.copyfile(export_dir / "int8.tflite", elsewhere / "int8.tflite")
    with runtime.load(model, manifest=export_dir / "manifest.json") as loaded:
        assert loaded.manifest_entry is not None
    _flip_byte(model, 100)
    with pytest.raises(runtime.ManifestError, match="does not match its manifest"):
        runtime.load(model, manifest=export_dir)  # a directory holding manifest.json works too


def test_file_not_in_the_manifest_is_refused(export_dir: Path, tiny: TinyModels) -> None:
    stranger = shutil.copyfile(tiny.fp32_tflite, export_dir / "other.tflite")
    with pytest.raises(runtime.ManifestError, match="other.tflite is not listed in the manifest"):
        runtime.load(stranger)


def test_unreadable_manifest_is_refused(export_dir: Path) -> None:
    (export_dir / "manifest.json").write_text("{not json")
    with pytest.raises(runtime.ManifestError, match="cannot read manifest"):
        runtime.load(export_dir / "int8.tflite")
