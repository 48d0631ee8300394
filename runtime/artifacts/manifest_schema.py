"""What a ``manifest.json`` may contain, checked as a whole before any field is read.

A manifest arrives with the files, possibly over the air, so it is input like
any other: ``validated_document(raw, source)`` bounds the file's size and its
nesting *before* parsing (``json.loads`` recurses, and 100,000 nested brackets
would end in ``RecursionError``), then validates the document against
``SCHEMA`` (JSON Schema draft 7, compiled once by ``fastjsonschema``: pure
Python, ~30 KB wheel, ~125 KB installed, no dependencies). Anything else is a
``ManifestError`` naming the manifest and the field::

    .../manifest.json: artifacts[2].ops: expected an object of op name -> count, got a list

Every file a manifest names (an artefact's ``file``, its probe's, the check
set's) must be a plain relative name (``PLAIN_NAME``): ASCII letters, digits,
``_ . -``, at most ``MAX_NAME_PARTS`` parts joined by ``/``, no part starting
with a dot. So no absolute path, no ``..``, no backslash or drive letter.
``runtime.artifacts.manifest.contained`` applies the same rule where a file is opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import fastjsonschema

from runtime.errors import ManifestError

MAX_MANIFEST_BYTES = 1 << 20  # an export of six formats with probes writes ~23 KB
MAX_DEPTH = 20  # nesting of objects and arrays; convert's manifests reach 8
MAX_ARTIFACTS = 64
MAX_NAME_PARTS = 2  # "cllnn_int8.tflite", "probes/cllnn_int8.tflite"
SCHEMA_VERSION = 1
# The runtimes an artefact names (its ``runtime``): LiteRT, ONNX Runtime, TensorFlow Lite Micro.
LITERT, ONNXRUNTIME, TFLM = "litert", "onnxruntime", "tflm"
BACKENDS = (LITERT, ONNXRUNTIME, TFLM)
# A device's choice, never a file's: LiteRT's files run on tflite-runtime's Interpreter (runtime.load's backend).
TFLITE_RUNTIME = "tflite-runtime"

_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
PLAIN_NAME = re.compile(rf"{_PART}(?:/{_PART}){{0,{MAX_NAME_PARTS - 1}}}")
PLAIN_NAME_RULE = (
    f"a plain name of a file inside the artefacts directory ([A-Za-z0-9_.-], at most {MAX_NAME_PARTS} parts "
    "joined by '/', none starting with '.'; no absolute path, '..', '\\' or drive letter)"
)


def is_plain_name(name: object) -> bool:
    """True when ``name`` is a string ``PLAIN_NAME`` matches in full."""
    return isinstance(name, str) and PLAIN_NAME.fullmatch(name) is not None


_TEXT = {"type": "string", "maxLength": 4096}
_SHORT = {"type": "string", "minLength": 1, "maxLength": 256}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "a SHA-256 as 64 lowercase hex digits"}
_SIZE = {"type": "integer", "minimum": 0, "maximum": 1 << 40, "description": "a size in bytes (integer)"}
_FILE = {"type": "string", "maxLength": 300, "format": "plain-name", "description": PLAIN_NAME_RULE}
_NAMES = {"type": "array", "items": _SHORT, "maxItems": 256, "description": "a list of names"}


def _object(properties: dict[str, Any], required: tuple[str, ...] = (), description: str = "",
            **extra: Any) -> dict[str, Any]:
    """A closed object: only ``properties``, with ``required`` present."""
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False, "description": description or "an object", **extra}


def _map(values: dict[str, Any], description: str, max_size: int = 1024) -> dict[str, Any]:
    """An object used as a mapping: any key, every value of one kind."""
    return {"type": "object", "additionalProperties": values, "propertyNames": {"maxLength": 256},
            "maxProperties": max_size, "description": description}


_TENSOR = _object(
    {
        "name": {"type": "string", "maxLength": 256},
        "shape": {"type": "array", "maxItems": 8, "description": "a list of dimensions (integers, -1 dynamic)",
                  "items": {"type": "integer", "minimum": -1, "maximum": 1 << 31}},
        "dtype": _SHORT,
        "scale": {"type": ["number", "null"]},
        "zero_point": {"type": ["integer", "null"]},
    },
    ("name", "shape", "dtype"),
    "a tensor spec (name, shape, dtype)",
)
_TENSORS = {"type": "array", "items": _TENSOR, "minItems": 1, "maxItems": 64, "description": "a list of tensor specs"}
_CHECK = _object({"passed": {"type": "boolean"}, "value": {}, "expected": _TEXT}, ("passed",),
                 "a check record (passed, value, expected)")
_PROBE = _object(
    {"file": _FILE, "sha256": _SHA256, "size": _SIZE, "stages": _NAMES,
     "outputs": {**_TENSORS, "minItems": 0}, "error": _TEXT},
    (),
    "a probe record ({file, sha256, size, ...} or {error})",
    dependencies={"file": ["sha256", "size"]},
)
_LISTED = _object({"file": _FILE, "sha256": _SHA256, "size": _SIZE}, ("file", "sha256", "size"),
                  "a listed file (file, sha256, size)")
_MCU = _object(
    {"flash_bytes": _SIZE, "arena_min_bytes": _SIZE, "arena_bytes": _SIZE,
     "stage_activation_bytes": _map(_SIZE, "an object of stage -> bytes"),
     "sources": {"type": "array", "items": _LISTED, "maxItems": 16, "description": "a list of listed files"}},
    ("flash_bytes", "arena_min_bytes", "arena_bytes"),
    "an mcu record (flash_bytes, arena_min_bytes, arena_bytes, ...)",
)
_DETAILS = _object(
    {
        "description": _TEXT,
        "metrics": _map({"type": "number"}, "an object of metric name -> number"),
        "checks": _map(_CHECK, "an object of check name -> check record"),
        "reproducible": {"type": ["boolean", "null"]},
        "reproducibility": _TEXT,
        "probe": {**_PROBE, "type": ["object", "null"]},
        "quantization": {"type": "object", "description": "how the file was quantized (graph, calibration, recipe)"},
        "mcu": {**_MCU, "type": ["object", "null"]},
    },
    (),
    "an object of what the export measured (details)",
)
_RELEASE = {"type": ["string", "null"], "maxLength": 64, "description": "a release version string or null"}
_NEEDS = _object(
    {
        "op_versions": _map({"type": "array", "maxItems": 64, "items": {"type": "integer", "minimum": 0},
                             "description": "a list of op versions"}, "an object of op name -> versions"),
        "op_types": _map(_NAMES, "an object of op name -> type signatures"),
        "opsets": _map({"type": "integer", "minimum": 0}, "an object of domain -> opset"),
        "ir_version": {"type": ["integer", "null"], "minimum": 0},
        "oldest": _map(_RELEASE, "an object of runtime package -> oldest release (or null)"),
        "reasons": _map(_TEXT, "an object of runtime package -> reason"),
    },
    (),
    "a runtime needs record (op_versions / opsets, oldest, reasons)",
)
_ENTRY = _object(
    {
        "file": _FILE,
        "format": _SHORT,
        "runtime": {"enum": list(BACKENDS), "description": " or ".join(repr(b) for b in BACKENDS)},
        "precision": _SHORT,
        "sha256": _SHA256,
        "size": _SIZE,
        "inputs": _TENSORS,
        "outputs": _TENSORS,
        "ops": _map({"type": "integer", "minimum": 0}, "an object of op name -> count"),
        "details": _DETAILS,
        "needs": _NEEDS,
    },
    ("file", "format", "runtime", "precision", "sha256", "size", "inputs", "outputs"),
    "an artefact entry",
)
_CHECK_SET = _object(
    {"file": _FILE, "sha256": _SHA256, "size": _SIZE,
     "images": {"type": "integer", "minimum": 0, "maximum": 10**8}, "source": _TEXT, "split": _SHORT,
     "stages": _NAMES},
    ("file", "sha256", "size", "images", "source", "split", "stages"),
    "a check set record (file, sha256, size, images, source, split, stages)",
)

# The metadata beside the artefacts is open (config, versions, unroll report, ...), but what the
# runtime and parity read from it is typed: source_model, config.train / config.tolerances, data.
SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "description": "an object with schema_version and artifacts",
    "required": ["schema_version", "artifacts"],
    "maxProperties": 64,
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION, "description": f"schema_version {SCHEMA_VERSION}"},
        "artifacts": {"type": "array", "items": _ENTRY, "maxItems": MAX_ARTIFACTS,
                      "description": "a list of artefact entries"},
        "check_set": {**_CHECK_SET, "type": ["object", "null"]},
        "source_model": {"type": "object", "description": "an object {file, sha256}",
                         "properties": {"file": _TEXT, "sha256": _SHA256}},
        "config": {"type": "object", "description": "an object of config sections",
                   "properties": {name: {"type": "object", "description": "an object (a config section)"}
                                  for name in ("model", "train", "export", "tolerances")}},
        "data": {"type": "object", "description": "an object describing the data",
                 "properties": {"check_images": {"type": "integer", "minimum": 0}}},
        "versions": _map({"type": "string", "maxLength": 256}, "an object of library -> version string"),
        "failed": _map(_TEXT, "an object of format -> error"),
    },
}

_validator: Callable[[Any], Any] | None = None


def _validate(data: Any) -> None:
    global _validator
    if _validator is None:  # compiled on first use: importing runtime stays fast
        _validator = fastjsonschema.compile(SCHEMA, formats={"plain-name": is_plain_name})
    _validator(data)


def validated_document(raw: bytes, source: str) -> dict[str, Any]:
    """``raw`` (a manifest file's bytes) as a document that satisfies ``SCHEMA``; else ``ManifestError``.

    ``source`` names the manifest in messages (its path).
    """
    try:
        data = bounded_json(raw, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_DEPTH)
    except DocumentError as exc:
        raise ManifestError({
            "size": f"{source}: larger than a manifest may be ({MAX_MANIFEST_BYTES:,} bytes); refusing to parse it",
            "utf-8": f"cannot read manifest {source}: not UTF-8 ({exc.detail})",
            "depth": f"{source}: nested more than {MAX_DEPTH} levels deep (objects and lists), more than a "
                     f"manifest may be; refusing to parse it",
            "json": f"cannot read manifest {source}: not valid JSON ({exc.detail})",
        }[exc.kind]) from exc
    try:
        _validate(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ManifestError(f"{source}: {schema_problem(exc)}") from None
    return data


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class DocumentError(ValueError):
    """Why bytes that should hold a bounded JSON document do not: ``kind`` is "size", "utf-8", "depth"
    or "json"; each caller words it for its own file (a manifest, a device's result file)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail


def bounded_json(raw: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """``raw`` parsed as JSON, but only when it is at most ``max_bytes`` long, UTF-8, and nested at most
    ``max_depth`` levels: ``json.loads`` recurses, so the nesting is bounded before it runs. Else
    ``DocumentError``."""
    if len(raw) > max_bytes:
        raise DocumentError("size", f"{len(raw):,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError("utf-8", str(exc)) from None
    if nesting_depth(text, stop_past=max_depth) > max_depth:
        raise DocumentError("depth")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer of too many digits
        raise DocumentError("json", str(exc)) from None


def nesting_depth(text: str, stop_past: int | None = None) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON ``text``, brackets inside strings not counted;
    with ``stop_past``, the scan ends as soon as the depth exceeds it.

    Never less than the depth ``json.loads`` reaches before it succeeds or stops at an error: the
    scan reads strings as JSON does, and an unterminated quote only makes it count more.
    """
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if stop_past is not None and deepest > stop_past:
                break
        elif token in "]}":
            depth -= 1
    return deepest


_JSON_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
               (list, "a list"), (dict, "an object"), (type(None), "null"))


def _kind(value: Any) -> str:
    return next(name for cls, name in _JSON_TYPES if isinstance(value, cls))


def schema_problem(exc: Any) -> str:
    """``field: expected ..., got ...`` from a fastjsonschema error."""
    field = re.sub(r"^data\.?", "", exc.name) or "the top level"
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    value = exc.value
    if exc.rule == "required" and isinstance(value, dict):
        missing = [key for key in definition.get("required", ()) if key not in value]
        return f"{field}: lacks {', '.join(missing)} (required)"
    if exc.rule == "dependencies" and isinstance(value, dict):
        needed = [key for key in definition.get("dependencies", {}).get("file", ()) if key not in value]
        return f"{field}: lacks {', '.join(needed)} (required with file)"
    if exc.rule == "additionalProperties" and isinstance(value, dict):
        known = set(definition.get("properties", {}))
        extra = sorted(str(key) for key in value if key not in known)
        return f"{field}: unknown field(s) {', '.join(extra)}; {_expected(definition)} has only {sorted(known)}"
    got = _kind(value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        got = f"{got} {value!r:.80}"
    if exc.rule in ("maxItems", "maxProperties", "maxLength", "minItems", "minLength", "maximum", "minimum"):
        if isinstance(value, (list, dict, str)):
            got = f"{_kind(value)} of length {len(value)}"
        return f"{field}: expected {_expected(definition)} ({exc.rule} {exc.rule_definition}), got {got}"
    return f"{field}: expected {_expected(definition)}, got {got}"


def _expected(definition: dict[str, Any]) -> str:
    if "description" in definition:
        return str(definition["description"])
    kind = definition.get("type", "a value")
    return f"{'an' if str(kind)[0] in 'aeiou' else 'a'} {kind}"
