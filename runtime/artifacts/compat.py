"""Which runtime release loads a file: its op versions (TFLite) or opsets (ONNX) against published tables.

A TFLite file lists its operator codes, each a builtin op and a version; an interpreter whose op
resolver lacks that version refuses the file (tflite-runtime 2.14: "Didn't find op for builtin opcode
'FULLY_CONNECTED' version '12'"). The converter's own ``min_runtime_version`` metadata cannot be
trusted (it reads 2.21.0 in a float32 file that 2.14 runs), so the requirement is derived here from
the file's op codes and the table in ``compat_table.json`` (the one place the versions live, with
their sources): op version -> TensorFlow Lite release, TensorFlow release -> tflite-runtime and
ai-edge-litert release, ONNX opset -> ONNX Runtime release, and the kernel type signatures measured
to need a newer runtime than their op version says.

``needs_of_tflite`` / ``needs_of_onnx`` turn a file's facts into a ``RuntimeNeeds`` (the manifest
record's ``needs``); ``refusal`` says, before loading, why the installed runtime cannot load a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from runtime.artifacts.records import RuntimeNeeds

TABLE_FILE = Path(__file__).with_name("compat_table.json")
LITERT_PACKAGE, TFLITE_RUNTIME_PACKAGE, ORT_PACKAGE = "ai-edge-litert", "tflite-runtime", "onnxruntime"
TFLITE_PACKAGES = (LITERT_PACKAGE, TFLITE_RUNTIME_PACKAGE)
ONNX_DOMAIN = "ai.onnx"  # the default domain, written "" in a file


@cache
def table() -> dict[str, Any]:
    """``compat_table.json``, read once."""
    data: dict[str, Any] = json.loads(TABLE_FILE.read_text(encoding="utf-8"))
    return data


def version_key(version: str) -> tuple[int, ...]:
    """``"2.14.0"`` -> ``(2, 14, 0)``; a suffix (``2.4.0.dev2026``, ``1.20.0rc1``) ends the number."""
    parts = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(part):
            break
    return tuple(parts) or (0,)


def builtin_name(code: int) -> str:
    """A TFLite builtin operator code's name (``BUILTIN_<n>`` for a code newer than the table)."""
    return str(table()["tflite"]["builtin_codes"].get(str(code), f"BUILTIN_{code}"))


def tensorflow_for(op: str, version: int) -> str | None:
    """The TensorFlow Lite release that first runs ``op`` at ``version``; None when the table lacks it."""
    versions = table()["tflite"]["op_versions"].get(op, [])
    return str(versions[version - 1]) if 1 <= version <= len(versions) else None


def _newest_known() -> str:
    return max((v for row in table()["tflite"]["op_versions"].values() for v in row), key=version_key)


def _litert_for(tensorflow: str) -> str | None:
    """The oldest ai-edge-litert whose kernels reach ``tensorflow``'s level; None beyond what was measured."""
    rows = table()["runtimes"][LITERT_PACKAGE]
    fits = [row["release"] for row in rows if version_key(row["tensorflow"]) >= version_key(tensorflow)]
    return min(fits, key=version_key) if fits else None


def _tflite_runtime_for(tensorflow: str) -> str | None:
    """tflite-runtime carries TensorFlow's own number; None when its last release is older."""
    last = table()["runtimes"][TFLITE_RUNTIME_PACKAGE]["last"]
    return tensorflow if version_key(tensorflow) <= version_key(last) else None


def install_limits(package: str) -> dict[str, str]:
    """What ``package``'s releases install beside (``newest_python``: the newest CPython with a wheel;
    ``numpy``: the NumPy it runs with, a specifier); ``{}`` where the table says nothing."""
    entry = table()["runtimes"].get(package)
    return dict(entry.get("install", {})) if isinstance(entry, dict) else {}


def needs_of_tflite(op_versions: Mapping[str, tuple[int, ...]],
                    op_types: Mapping[str, tuple[str, ...]] | None = None) -> RuntimeNeeds:
    """The oldest ai-edge-litert and tflite-runtime that load a file of these op codes and kernel types.

    An op version the table does not know (a runtime newer than its copy) asks for the newest release
    the table knows, and says so. Each minimum names the op that sets it (``reasons``).
    """
    op_types = dict(op_types or {})
    oldest: dict[str, str | None] = {LITERT_PACKAGE: "0", TFLITE_RUNTIME_PACKAGE: "0"}
    reasons: dict[str, str] = {}

    def require(package: str, release: str | None, why: str) -> None:
        current = oldest[package]
        if current is None:
            return
        if release is None or version_key(release) > version_key(current):
            oldest[package], reasons[package] = release, why

    levels = []
    for op, versions in sorted(op_versions.items()):
        for version in versions:
            level = tensorflow_for(op, version)
            why = f"{op} v{version} (TensorFlow Lite {level})"
            if level is None:
                level = _newest_known()
                why = f"{op} v{version} (newer than the table's TensorFlow Lite {level})"
            levels.append((version_key(level), level, why))
    for _, level, why in sorted(levels, key=lambda item: item[0], reverse=True):  # the most demanding names it
        require(LITERT_PACKAGE, _litert_for(level), why)
        require(TFLITE_RUNTIME_PACKAGE, _tflite_runtime_for(level), why)
    for rule in table()["tflite"]["kernel_types"]:
        if rule["types"] in op_types.get(rule["op"], ()):
            why = f"{rule['op']} {rule['types']} (a kernel type newer than its op version, measured)"
            for package in TFLITE_PACKAGES:
                require(package, rule["oldest"].get(package), why)
    return RuntimeNeeds(op_versions=dict(op_versions), op_types=op_types,
                        oldest={k: (None if v == "0" else v) for k, v in oldest.items()}, reasons=reasons)


def needs_of_onnx(opsets: Mapping[str, int], ir_version: int | None) -> RuntimeNeeds:
    """The oldest onnxruntime whose published opsets and IR version cover the file's."""
    rows = table()["onnx"]["onnxruntime"]
    contrib = set(table()["onnx"]["contrib_domains"])
    wanted = [(domain, version) for domain, version in sorted(opsets.items())
              if not (domain in contrib and version <= 1)]
    fits = [row for row in rows
            if all(row.get(domain, -1) >= version for domain, version in wanted)
            and (ir_version is None or row["ir"] >= ir_version)]
    oldest = min(fits, key=lambda row: version_key(row["release"])) if fits else None
    parts = [f"{domain} opset {version}" for domain, version in wanted]
    if ir_version is not None:
        parts.append(f"IR {ir_version}")
    why = ", ".join(parts) + (" (ONNX Runtime's compatibility table)" if oldest else
                              " (newer than ONNX Runtime's compatibility table knows)")
    return RuntimeNeeds(opsets=dict(opsets), ir_version=ir_version,
                        oldest={ORT_PACKAGE: None if oldest is None else str(oldest["release"])},
                        reasons={ORT_PACKAGE: why})


def installed(package: str) -> str | None:
    """The installed version of ``package``, or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def refusal(needs: RuntimeNeeds, package: str, version: str) -> str | None:
    """Why ``package`` at ``version`` cannot load a file of ``needs``; None when the table says it can
    (or the record says nothing about that package, as an older manifest's)."""
    if package not in needs.oldest:
        return None
    oldest = needs.oldest[package]
    if oldest is not None and version_key(version) >= version_key(oldest):
        return None
    why = needs.reasons.get(package, "its op versions")
    if oldest is None:
        others = [f"{name} >= {release}" for name, release in needs.oldest.items()
                  if name != package and release is not None]
        alternative = f"; {' or '.join(others)} loads it" if others else ""
        return f"needs {why}: no {package} release loads it{alternative}; this device has {package} {version}"
    return f"needs {why}: {package} >= {oldest}; this device has {package} {version}"
