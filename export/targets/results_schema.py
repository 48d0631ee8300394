"""What each file of a device's results directory may contain: closed JSON schemas of exactly what
``ParityReport``, ``BenchReport`` and ``Selection`` write (``to_dict``), and of ``target.json``, with every
string, list and number bounded. ``probe.json`` has its own, beside the probe (``export.targets.probe``).

The device runs the host's own cllnn-edge wheel (the bundle carries it), so a field these schemas do not
know is not a newer layout but an answer that is not ours: refused, as a manifest's would be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import fastjsonschema

from export.targets.spec import DEVICE_NAME
from runtime.artifacts.manifest_schema import MAX_ARTIFACTS, PLAIN_NAME_RULE, is_plain_name
from runtime.checks.parity import RUNTIME, TABLE
from runtime.deploy.budget import Budget
from runtime.deploy.choose import SCHEMA_VERSION, SELECTION_NAME, TOOL

PROBE_JSON, VERIFY_JSON, BENCH_JSON, RUN_JSON = "probe.json", "verify.json", "bench.json", "target.json"
RESULT_FILES = (PROBE_JSON, VERIFY_JSON, BENCH_JSON, SELECTION_NAME, RUN_JSON)
MAX_RESULT_BYTES = 8 * 1024 * 1024  # a verify or bench JSON is tens of kB; more is not one of ours
MAX_DEPTH = 6  # verify.json reaches 5 (results[].confusion[][]); the probe's answer has its own bound
TIMINGS = {False: "device", True: "emulated: not a real board's"}  # target.json's "timings", by "emulated"

_TEXT = {"type": "string", "maxLength": 4096}
_NAME = {"type": "string", "minLength": 1, "maxLength": 256}
_FILE = {"type": "string", "maxLength": 300, "format": "plain-name", "description": PLAIN_NAME_RULE}
_NUMBER = {"type": "number"}
_MAYBE_NUMBER = {"type": ["number", "null"], "description": "a number or null"}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 1 << 40, "description": "a count (integer >= 0)"}
_MAYBE_COUNT = {"type": ["integer", "null"], "minimum": 0, "maximum": 1 << 40, "description": "a count or null"}
_FLAG = {"type": "boolean"}
# --formats: the formats asked (null: every listed file); absent in results written before it
_FORMATS = {"type": ["array", "null"], "items": _NAME, "maxItems": MAX_ARTIFACTS, "uniqueItems": True,
            "description": "a list of format names or null"}


def _closed(description: str, properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with exactly ``properties``, all but ``optional`` required."""
    return {"type": "object", "properties": properties, "additionalProperties": False, "description": description,
            "required": [name for name in properties if name not in optional]}


def _map(values: dict[str, Any], description: str, size: int = 64) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": values, "propertyNames": {"maxLength": 256},
            "maxProperties": size, "description": description}


def _list(items: dict[str, Any], description: str, size: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "maxItems": size, "description": description}


_VERSIONS = _map({"type": "string", "maxLength": 256}, "an object of library -> version string")
_TOLERANCES = _map(_map(_NUMBER, "an object of tolerance -> number"), "an object of precision -> tolerances")
_MATRIX = _list(_list({"type": "integer", "minimum": 0}, "a row of counts", 1024),
                "a confusion matrix (a list of rows of counts)", 1024)
_SKIPPED = _list(_closed("a skipped file (format, file, precision, reason, by)",
                         {"format": _NAME, "file": _FILE, "precision": _NAME, "reason": _TEXT,
                          "by": {"enum": [TABLE, RUNTIME], "description": f"{TABLE!r} or {RUNTIME!r}"}}),
                 "a list of skipped files", MAX_ARTIFACTS)
_MACHINE = _closed("a machine record (platform, processor, cpu, cpu_arch, cpu_isa, cpu_class, cpu_count, python)",
                   {"platform": _TEXT, "processor": _TEXT, "cpu": _TEXT, "cpu_arch": _NAME,
                    "cpu_isa": {"type": ["array", "null"], "items": _NAME, "maxItems": 64,
                                "description": "a list of ISA features or null"},
                    "cpu_class": _TEXT, "cpu_count": _MAYBE_COUNT, "python": _NAME})
_SETTINGS = _closed("bench settings (batch, threads, warmup, runs, seed)",
                    {"batch": _COUNT, "threads": _MAYBE_COUNT, "warmup": _COUNT, "runs": _COUNT, "seed": _COUNT})

_RESULT = _closed(
    "a file's parity result (format, file, precision, metrics, checks, stages, ...)",
    {"format": _NAME, "file": _FILE, "precision": _NAME,
     "metrics": _map(_NUMBER, "an object of metric -> number"),
     "checks": _list(_closed("a check (name, value, limit, rule, passed)",
                             {"name": _NAME, "value": _NUMBER, "limit": _NUMBER,
                              "rule": {"enum": ["<=", ">="], "description": "'<=' or '>='"}, "passed": _FLAG}),
                     "a list of checks", 64),
     "stages": _list(_closed("a stage result (stage, max_abs, nrmse, limit, passed)",
                             {"stage": _NAME, "max_abs": _NUMBER, "nrmse": _NUMBER, "limit": _NUMBER,
                              "passed": _FLAG}), "a list of stage results", 64),
     "stage_note": _TEXT, "confusion": _MATRIX, "passed": _FLAG,
     "first_failing_stage": {"type": ["string", "null"], "maxLength": 256, "description": "a stage name or null"},
     "main_error_stage": {**_closed("a stage's share of the error (stage, rise, share)",
                                    {"stage": _NAME, "rise": _NUMBER, "share": _NUMBER}),
                          "type": ["object", "null"]}},
)
VERIFY = _closed(
    "a parity report (cllnn-bench verify --json)",
    {"model": _TEXT, "artifacts_dir": _TEXT, "data": _TEXT, "split": _NAME, "images": _COUNT,
     "tolerances": _TOLERANCES, "reference_accuracy": _NUMBER, "seconds": _NUMBER, "versions": _VERSIONS,
     "reference_confusion": _MATRIX, "passed": _FLAG,
     "results": _list(_RESULT, "a list of parity results", MAX_ARTIFACTS), "skipped": _SKIPPED,
     "formats": _FORMATS},
    optional=("formats",),
)
BENCH = _closed(
    "a benchmark report (cllnn-bench --json)",
    {"machine": _MACHINE, "versions": _VERSIONS, "settings": _SETTINGS,
     "results": _list(_closed(
         "a benchmark result (model, format, file_size, load_ms, batch, ..., samples_us)",
         {"model": _TEXT, "format": _NAME, "file_size": _COUNT, "load_ms": _NUMBER, "batch": _COUNT,
          "threads": _MAYBE_COUNT, "runs": _COUNT, "p50_us": _NUMBER, "p90_us": _NUMBER, "p99_us": _NUMBER,
          "mean_us": _NUMBER, "throughput_ips": _NUMBER, "peak_rss_mib": _NUMBER,
          "samples_us": _list(_NUMBER, "a list of timings (us)", 1_000_000), "export_format": _NAME},
         optional=("export_format",)), "a list of benchmark results", MAX_ARTIFACTS * 16)},
)
_CANDIDATE = _closed(
    "a candidate (format, file, precision, size, verified, ..., reason)",
    {"format": _NAME, "file": _FILE, "precision": _NAME, "size": _COUNT, "size_kib": _NUMBER, "verified": _FLAG,
     "agreement_pct": _NUMBER, "accuracy": _NUMBER, "accuracy_drop_pp": _NUMBER, "max_abs": _NUMBER,
     "p50_us": _MAYBE_NUMBER, "p99_us": _MAYBE_NUMBER, "chosen": _FLAG, "reason": _TEXT,
     "arena_bytes": _MAYBE_COUNT},
)
_BUDGET = tuple(limit.name for limit in dataclasses.fields(Budget))
SELECTION = _closed(
    "a selection (cllnn-bench select's selection.json)",
    {"tool": {"const": TOOL, "description": repr(TOOL)},
     "schema_version": {"const": SCHEMA_VERSION, "description": f"schema_version {SCHEMA_VERSION}"},
     "artifacts_dir": _TEXT, "machine": _MACHINE, "versions": _VERSIONS, "settings": _SETTINGS,
     "budget": _closed(f"a budget ({', '.join(_BUDGET)})", {name: _MAYBE_NUMBER for name in _BUDGET}),
     "tolerances": _TOLERANCES,
     "check_set": _closed("a check set record (file, images, split, source)",
                          {"file": _FILE, "images": _COUNT, "split": _NAME, "source": _TEXT}),
     "reference_accuracy": _NUMBER, "verdict": _TEXT, "seconds": _NUMBER, "signature": _TEXT, "timing": _TEXT,
     "chosen": {"type": ["string", "null"], "maxLength": 300, "description": "a file name or null"},
     "candidates": _list(_CANDIDATE, "a list of candidates", MAX_ARTIFACTS), "skipped": _SKIPPED,
     "formats": _FORMATS},
    optional=("formats",),
)
_PIN = _closed("a runtime pin (package, version, from)", {"package": _NAME, "version": _NAME, "from": _NAME})
TARGET = _closed(
    "a target record (name, target, emulated, timings, runtime, formats)",
    {"name": {"type": "string", "pattern": DEVICE_NAME.pattern,
              "description": "a device name (letters, digits, - and _, up to 40)"},
     "target": {"type": "string", "minLength": 1, "maxLength": 300}, "emulated": _FLAG,
     "timings": {"enum": list(TIMINGS.values()), "description": " or ".join(map(repr, TIMINGS.values()))},
     "runtime": {"anyOf": [{"type": "null"}, _PIN], "description": "null or a runtime pin"},
     "formats": _FORMATS},
    optional=("runtime", "formats"),  # directories written before runtime pins, before --formats
)
SCHEMAS = {VERIFY_JSON: VERIFY, BENCH_JSON: BENCH, SELECTION_NAME: SELECTION, RUN_JSON: TARGET}
_validators: dict[str, Callable[[Any], Any]] = {}


def validator(kind: str) -> Callable[[Any], Any]:
    """The compiled check of result file ``kind`` (compiled on first use: building the CLI stays fast)."""
    if kind not in _validators:
        _validators[kind] = fastjsonschema.compile(SCHEMAS[kind], formats={"plain-name": is_plain_name})
    return _validators[kind]
