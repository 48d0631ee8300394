"""Property-based tests (Hypothesis) of what a device or a user hands the toolkit: manifests, configs, images.

Each test states one property: whatever the input, the outcome is the value or the project's own
error class, never an AttributeError, KeyError, TypeError or RecursionError from deep inside. In
CI every test runs a fixed budget of examples from a fixed seed (``derandomize``); ``CLLNN_FUZZ=long``
runs many more from a random seed. The mutated model files are in ``test_fuzz_files``.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import runtime
from cllnn_edge.config import Config
from cllnn_edge.errors import ConfigError
from runtime.artifacts.manifest import MANIFEST_NAME, Manifest, load_manifest, parse_manifest
from tests.runtime.conftest import TinyModels
from tests.runtime.helpers import write_artifacts

LONG = os.environ.get("CLLNN_FUZZ") == "long"
FUZZ = settings(
    max_examples=5_000 if LONG else 150,
    derandomize=not LONG,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

# -- JSON values ------------------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=12), children, max_size=5)),
    max_leaves=30,
)


@pytest.fixture(scope="module")
def manifest_document(tiny: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The manifest.json convert would write beside the tiny files."""
    out = write_artifacts(tiny, tmp_path_factory.mktemp("fuzz") / "artifacts")
    document: dict[str, Any] = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    return document


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (keys and indices), the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutated(document: dict[str, Any], path: tuple[Any, ...], drop: bool, replacement: Any) -> Any:
    if not path:
        return replacement
    mutated = copy.deepcopy(document)
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return mutated


def _parse(raw: bytes) -> str:
    """Parse must give a Manifest or raise ManifestError (the outcome's name); anything else fails."""
    try:
        manifest = parse_manifest(raw, "m.json")
    except runtime.ManifestError as exc:
        assert str(exc), "a ManifestError must say what is wrong"
        return "ManifestError"
    assert isinstance(manifest, Manifest)
    return "Manifest"


@FUZZ
@given(document=JSON)
def test_any_json_document_is_a_manifest_or_a_manifest_error(document: Any) -> None:
    event(_parse(json.dumps(document).encode()))


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_a_manifest_or_a_manifest_error(raw: bytes) -> None:
    event(_parse(raw))


@FUZZ
@given(data=st.data(), drop=st.booleans(), replacement=JSON)
def test_a_mutated_real_manifest_is_a_manifest_or_a_manifest_error(
    manifest_document: dict[str, Any], tmp_path: Path, data: st.DataObject, drop: bool, replacement: Any
) -> None:
    assert isinstance(parse_manifest(json.dumps(manifest_document).encode(), "m.json"), Manifest)
    path = data.draw(st.sampled_from(_paths(manifest_document)), label="path")
    raw = json.dumps(_mutated(manifest_document, path, drop and bool(path), replacement)).encode()
    event(_parse(raw))
    (tmp_path / MANIFEST_NAME).write_bytes(raw)  # and through the file reader
    try:
        assert isinstance(load_manifest(tmp_path), Manifest)
    except runtime.ManifestError:
        pass


def test_deep_nesting_is_a_manifest_error_not_a_recursion_error() -> None:
    for depth in (100, 10_000, 200_000):
        _parse(b"[" * depth + b"]" * depth)
        _parse(b'{"schema_version": 1, "artifacts": ' + b"[" * depth + b"]" * depth + b"}")


# -- configs ----------------------------------------------------------------------------------
DEFAULTS = Config().to_dict()
SECTION_NAMES = st.sampled_from(sorted(DEFAULTS)) | st.text(max_size=10)
CONFIG_VALUES = JSON | st.floats() | st.sampled_from(["all", "tflite-fp32", "float-front", "float16", "int8"])


@st.composite
def config_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Tables of the real sections and keys (and some others) with values of any JSON type."""
    result: dict[str, Any] = {}
    for section in draw(st.lists(SECTION_NAMES, max_size=5, unique=True)):
        keys = sorted(DEFAULTS.get(section, {}))
        key_names = (st.sampled_from(keys) | st.text(max_size=10)) if keys else st.text(max_size=10)
        result[section] = draw(st.dictionaries(key_names, CONFIG_VALUES, max_size=6))
    if draw(st.booleans()):  # now and then not a table at all, or a section that is not one
        return draw(st.sampled_from([result, {"model": draw(JSON)}, draw(JSON)]))
    return result


def _config_or_config_error(make: Callable[[], Config]) -> None:
    """``make()`` gives a Config or raises ConfigError with a message, nothing else; counted as events."""
    try:
        config = make()
    except ConfigError as exc:
        assert str(exc)
        event("ConfigError")
        return
    assert isinstance(config, Config)
    event("Config")


def _from_dict(data: Any) -> None:
    _config_or_config_error(lambda: Config.from_dict(data))


@FUZZ
@given(data=config_dicts())
def test_any_config_dict_is_a_config_or_a_config_error(data: Any) -> None:
    _from_dict(data)


@FUZZ
@given(section=st.sampled_from(sorted(DEFAULTS)), data=st.data())
def test_one_changed_value_of_a_real_config_is_a_config_or_a_config_error(section: str, data: st.DataObject) -> None:
    document = copy.deepcopy(DEFAULTS)
    key = data.draw(st.sampled_from(sorted(document[section])), label="key")
    document[section][key] = data.draw(CONFIG_VALUES, label="value")
    _from_dict(document)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value if item is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def toml_text(document: dict[str, Any]) -> str:
    """A TOML rendering of ``document`` (None values dropped: TOML has no null)."""
    lines = []
    for section, table in document.items():
        if not isinstance(table, dict):
            lines.append(f"{json.dumps(section)} = {_toml_value(table)}")
            continue
        lines.append(f"[{json.dumps(section)}]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=config_dicts().filter(lambda d: isinstance(d, dict)).map(toml_text)
       | st.text(alphabet=st.sampled_from(list('[]="\'.,#\n {}-_+0123456789aefinrtuxmodl\\')), max_size=200)
       | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_any_toml_file_is_a_config_or_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _config_or_config_error(lambda: Config.from_toml(path))


def test_the_default_config_round_trips_through_toml_text(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(toml_text(DEFAULTS), encoding="utf-8")
    assert Config.from_toml(tmp_path / "config.toml") == Config()


# -- input arrays -----------------------------------------------------------------------------
DTYPES = st.sampled_from([np.uint8, np.int8, np.float32, np.float64, np.bool_, np.int64])
SHAPES = (st.sampled_from([(28, 28), (1, 28, 28), (3, 28, 28), (2, 28, 28, 1), (0, 28, 28), (28, 28, 1),
                           (2, 28, 28, 3), (1, 1, 28, 28), (28,), ()])
          | hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4))


@st.composite
def image_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(DTYPES))
    shape = draw(SHAPES)
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize) if draw(st.booleans()) else st.floats(0, 255, width=32)
        fill = st.floats(width=8 * dtype.itemsize)  # NaN and inf among them
        return draw(hnp.arrays(dtype, shape, elements=elements, fill=fill))
    return draw(hnp.arrays(dtype, shape))


@pytest.fixture(scope="module")
def loaded(tiny: TinyModels) -> Any:
    models = {name: runtime.load(path, manifest=None) for name, path in tiny.all().items()}
    yield models
    for model in models.values():
        model.close()


@pytest.mark.parametrize("name", ["fp32_tflite", "int8_tflite", "fixed_batch_tflite", "fp32_onnx", "int8_onnx"])
@FUZZ
@given(images=image_arrays())
def test_any_array_is_probabilities_or_an_input_error(loaded: dict[str, Any], name: str, images: np.ndarray) -> None:
    try:
        result = loaded[name].predict(images)
    except runtime.InputError as exc:
        assert str(exc)
        event("InputError")
        return
    event("probabilities")
    n = 1 if images.ndim == 2 else images.shape[0]
    assert isinstance(result, np.ndarray) and result.dtype == np.float32 and result.shape == (n, 10), (
        images.shape, images.dtype, getattr(result, "shape", None))
    assert np.isfinite(result).all()
