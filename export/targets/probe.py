"""What a target has, asked before anything is installed there: ``runtime/probe.py`` (standard library
only) is sent with ``runtime/machine.py`` beside it into the device's ``probe/`` directory and run with
the device's Python; its one JSON object comes back as a ``DeviceFacts``.

The answer is input from another machine, so it is checked as strictly as a manifest: bounded in size
and nesting before it is parsed, then validated against ``SCHEMA`` (closed objects, bounded strings and
numbers; fastjsonschema, as ``runtime.artifacts.manifest_schema``). Anything else is a ``TargetError``
naming the target.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import fastjsonschema

import runtime.machine
import runtime.probe
from export.errors import TargetError
from export.targets.device import MIN_PYTHON, Device
from runtime.artifacts.manifest_schema import nesting_depth
from runtime.machine import CpuInfo, machine_line

PROBE_DIR = PurePosixPath("probe")  # in the device's working directory
PROBE_FILES = (Path(runtime.probe.__file__), Path(runtime.machine.__file__))  # probe.py, machine.py beside it
MAX_PROBE_BYTES = 64 * 1024  # a probe's answer is ~700 bytes
MAX_DEPTH = 4
PROBE_TIMEOUT = 120.0  # seconds: an emulated Python starts slowly

_TEXT = {"type": "string", "maxLength": 512}
_NAME = {"type": "string", "minLength": 1, "maxLength": 128}
_VERSION = {"type": ["string", "null"], "maxLength": 64, "pattern": r"^[0-9A-Za-z.+!_-]+$"}
_COUNT = {"type": ["integer", "null"], "minimum": 1, "maximum": 1 << 16}


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly ``properties``, each required."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


SCHEMA: dict[str, Any] = _closed({
    "probe_version": {"const": runtime.probe.PROBE_VERSION},
    "system": _NAME,
    "kernel": _TEXT,
    "machine": _NAME,
    "cpu": _closed({"cpu": _TEXT, "cpu_arch": _NAME, "cpu_class": _TEXT, "cpu_count": _COUNT,
                    "cpu_isa": {"type": ["array", "null"], "items": _NAME, "maxItems": 64}}),
    "python": _closed({"version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+[0-9A-Za-z+.]*$",
                                   "maxLength": 32},
                       "implementation": _NAME, "executable": _TEXT}),
    "glibc": {"type": ["string", "null"], "pattern": r"^\d+\.\d+", "maxLength": 32},
    "directory": _TEXT,
    "disk_free_bytes": {"type": "integer", "minimum": 0, "maximum": 1 << 60},
    "packages": _closed({name: _VERSION for name in runtime.probe.RUNTIMES}),
})
SCHEMA["properties"]["target"] = {"type": "string", "maxLength": 300}  # in to_dict's copy, not the probe's
_validator: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class DeviceFacts:
    """One probe's answer. ``packages``: each of ``runtime.probe.RUNTIMES`` -> its version, None when
    not installed there."""

    target: str
    system: str
    kernel: str
    machine: str
    cpu: CpuInfo
    cpu_count: int | None
    python: str
    python_implementation: str
    python_executable: str
    glibc: str | None
    directory: str
    disk_free_bytes: int
    packages: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def python_version(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.python.split(".")[:2])

    def check_python(self) -> None:
        """A ``TargetError`` unless the device's Python is new enough for the device side."""
        if self.python_version < MIN_PYTHON:
            needed = ".".join(map(str, MIN_PYTHON))
            raise TargetError(f"target {self.target}: {self.python_executable} is Python {self.python}; the device "
                              f"side needs Python >= {needed}: install one there as python3 (Debian 12 and "
                              f"Raspberry Pi OS bookworm have 3.11)")

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON data (``--json``, a run's devices/NAME/probe.json): the probe's own object,
        its CPU class by this toolkit's rule, and the target; ``parse_probe`` reads it back."""
        return {
            "target": self.target, "probe_version": runtime.probe.PROBE_VERSION, "system": self.system,
            "kernel": self.kernel, "machine": self.machine, "cpu": {**self.cpu.record(), "cpu_count": self.cpu_count},
            "python": {"version": self.python, "implementation": self.python_implementation,
                       "executable": self.python_executable},
            "glibc": self.glibc, "directory": self.directory, "disk_free_bytes": self.disk_free_bytes,
            "packages": dict(self.packages),
        }

    def lines(self) -> list[str]:
        """The facts as a person reads them."""
        installed = [f"{name} {version}" for name, version in self.packages.items() if version]
        gib = self.disk_free_bytes / (1 << 30)
        return [f"target:   {self.target}",
                f"system:   {self.system} {self.kernel} ({self.machine}), glibc {self.glibc or 'not found'}",
                f"cpu:      {machine_line(self.to_dict()['cpu'])}",
                f"python:   {self.python_implementation} {self.python} ({self.python_executable})",
                f"disk:     {gib:.1f} GiB free in {self.directory}",
                f"runtimes: {', '.join(installed) or 'none of ' + ', '.join(self.packages)}"]


def probe(device: Device, *, timeout: float = PROBE_TIMEOUT, require_python: bool = True) -> DeviceFacts:
    """Send the probe to ``device``, run it there and return what it found; with ``require_python`` a
    Python too old for the device side is a ``TargetError``."""
    for local in PROBE_FILES:
        device.put(local, PROBE_DIR / local.name)
    done = device.checked([device.python, str(PROBE_DIR / "probe.py")], what="the probe", timeout=timeout)
    facts = parse_probe(done.stdout, device.spec.text)
    if require_python:
        facts.check_python()
    return facts


def parse_probe(raw: bytes, target: str) -> DeviceFacts:
    """``raw`` (the probe's stdout) as ``DeviceFacts``; anything but what ``runtime.probe`` writes is
    a ``TargetError``."""
    where = f"target {target}: the probe's answer"
    if len(raw) > MAX_PROBE_BYTES:
        raise TargetError(f"{where} is {len(raw):,} bytes, more than the {MAX_PROBE_BYTES:,} a probe writes; refused")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TargetError(f"{where} is not UTF-8 ({exc}); refused") from None
    if nesting_depth(text, stop_past=MAX_DEPTH) > MAX_DEPTH:
        raise TargetError(f"{where} is nested deeper than {MAX_DEPTH} levels; refused")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TargetError(f"{where} is not one JSON object ({exc}): {text[:200]!r}") from None
    try:
        _validate(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise TargetError(f"{where} does not match the probe's schema: {exc.message}") from None
    if data.get("target", target) != target:
        raise TargetError(f"{where} names another target, {data['target']!r}; refused")
    cpu = data["cpu"]
    return DeviceFacts(
        target=target, system=data["system"], kernel=data["kernel"], machine=data["machine"],
        cpu=CpuInfo(model=cpu["cpu"], arch=cpu["cpu_arch"],
                    isa=None if cpu["cpu_isa"] is None else tuple(cpu["cpu_isa"])),
        cpu_count=cpu["cpu_count"], python=data["python"]["version"],
        python_implementation=data["python"]["implementation"], python_executable=data["python"]["executable"],
        glibc=data["glibc"], directory=data["directory"], disk_free_bytes=data["disk_free_bytes"],
        packages=dict(data["packages"]),
    )


def _validate(data: Any) -> None:
    global _validator
    if _validator is None:  # compiled on first use: building the CLI's parser stays fast
        _validator = fastjsonschema.compile(SCHEMA)
    _validator(data)
