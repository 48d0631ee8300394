"""The format registry names each converter by module and function: reading it (``cllnn-export --help``,
a config check) loads no converter library, running a converter loads its module."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from export.formats.registry import FORMATS, Converter
from runtime.artifacts.manifest_schema import LITERT, ONNXRUNTIME, TFLM

HEAVY = ("tensorflow", "keras", "onnx", "tf2onnx", "ai_edge_quantizer", "export.formats.tflite",
         "export.formats.onnx", "export.formats.aeq")
ROOT = Path(__file__).parents[2]


def _heavy_after(code: str) -> list[str]:
    script = (f"import sys\n{code}\n"
              f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return eval(done.stdout.strip().splitlines()[-1])  # a list of module names, printed by the script above


def test_help_and_format_checks_load_no_converter_library(tmp_path: Path) -> None:
    code = (
        "from export.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"assert main(['run', '--data', 'embedded', '--formats', 'coreml', '--out', {str(tmp_path)!r}]) == 2\n"
        f"assert main(['run', '--data', 'embedded', '--recipe', 'cnn=int9', '--out', {str(tmp_path)!r}]) == 2\n"
        "from export.formats.registry import parse_formats\nparse_formats('all')\n"
    )
    assert _heavy_after(code) == []


def test_each_converter_names_a_function_of_its_module() -> None:
    """Every format's converter resolves (a typo in a module or function name fails here, not mid-run)."""
    for fmt in FORMATS.values():
        converter = fmt.convert
        assert isinstance(converter, Converter), fmt.name
        assert callable(getattr(importlib.import_module(converter.module), converter.function)), fmt.name


def test_backend_names_are_the_manifest_schema_constants() -> None:
    assert {f.runtime for f in FORMATS.values()} == {LITERT, ONNXRUNTIME, TFLM}


def test_a_converter_passes_its_precision_on(tmp_path: Path) -> None:
    """``precision`` reaches the function as ``precision=`` (the TFLite converter serves four)."""
    calls: list[tuple] = []
    module = type(sys)("shape_probe_converters")
    module.convert = lambda source, out, conversion, **kw: calls.append((source, out, conversion, kw))
    sys.modules[module.__name__] = module
    try:
        Converter(module.__name__, "convert", "int8")(tmp_path / "a", tmp_path / "b", None)  # type: ignore[arg-type]
        Converter(module.__name__, "convert")(tmp_path / "a", tmp_path / "c", None)  # type: ignore[arg-type]
    finally:
        del sys.modules[module.__name__]
    assert calls == [(tmp_path / "a", tmp_path / "b", None, {"precision": "int8"}),
                     (tmp_path / "a", tmp_path / "c", None, {})]


@pytest.mark.parametrize("name", ["tflite-int8", "onnx-fp32", "tflite-mixed"])
def test_the_registry_keeps_its_converters(name: str) -> None:
    expected = {"tflite-int8": ("export.formats.tflite", "to_tflite", "int8"),
                "onnx-fp32": ("export.formats.onnx", "to_onnx_float", None),
                "tflite-mixed": ("export.formats.aeq", "to_tflite_recipe", None)}[name]
    converter = FORMATS[name].convert
    assert (converter.module, converter.function, converter.precision) == expected
