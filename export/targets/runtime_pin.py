"""The one runtime a device runs with, as production will: ``--runtime tflite-runtime==2.14`` on
``target run``, ``convert`` and ``run`` (``[target] runtime``), or the one the device has
(``--use-device-runtime``).

A ``RuntimePin`` is parsed once, from a pip requirement pinned with ``==`` to one of the device
runtimes ``runtime.artifacts.compat`` knows, and then handed down as it is: the bundle brings that
release (``requirement``, with what it installs beside: tflite-runtime 2.14 runs with NumPy 1.x
only), the device's ``cllnn-bench`` runs with it (``tflite_backend``), convert checks each file
against it (``refusal``) and ``target.json`` records it (``to_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from export.errors import TargetError
from runtime.artifacts.compat import LITERT_PACKAGE, ORT_PACKAGE, TFLITE_RUNTIME_PACKAGE, install_limits, refusal
from runtime.artifacts.records import RuntimeNeeds

PACKAGES = (TFLITE_RUNTIME_PACKAGE, LITERT_PACKAGE, ORT_PACKAGE)  # the order --use-device-runtime prefers
EXAMPLES = "tflite-runtime==2.14, ai-edge-litert==1.4.0 or onnxruntime==1.20.1"


@dataclass(frozen=True)
class RuntimePin:
    """One runtime package at one release (``version`` as given: ``2.14`` and ``2.14.0`` are one to pip)."""

    package: str  # one of PACKAGES, canonical
    version: str
    origin: str = "--runtime"  # where it came from, for messages and target.json

    @classmethod
    def parse(cls, text: str, origin: str = "--runtime") -> RuntimePin:
        """``NAME==VERSION`` for a known runtime, else a ``TargetError`` saying what is taken."""
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise TargetError(f"{origin} {text!r}: not a pip requirement ({exc}); expected NAME==VERSION, "
                              f"e.g. {EXAMPLES}") from None
        name = canonicalize_name(requirement.name)
        if name not in PACKAGES:
            raise TargetError(f"{origin} {text!r}: {requirement.name} is not a device runtime; one of "
                              f"{', '.join(PACKAGES)}, e.g. {EXAMPLES}")
        specs = list(requirement.specifier)
        if (requirement.marker is not None or requirement.url or requirement.extras or len(specs) != 1
                or specs[0].operator != "==" or "*" in specs[0].version):
            raise TargetError(f"{origin} {text!r}: pin one release with == and nothing else "
                              f"(no range, wildcard, extra, marker or URL), e.g. {EXAMPLES}")
        try:
            Version(specs[0].version)
        except InvalidVersion:  # packaging accepts legacy versions after ==; pip does not
            raise TargetError(f"{origin} {text!r}: {specs[0].version!r} is not a release number") from None
        return cls(name, specs[0].version, origin)

    @classmethod
    def of_device(cls, target: str, packages: Mapping[str, str | None]) -> RuntimePin:
        """The runtime a probe found installed (``DeviceFacts.packages``), tflite-runtime first (the one
        a board image pins), then ai-edge-litert, then onnxruntime."""
        for package in PACKAGES:
            if packages.get(package):
                return cls(package, str(packages[package]), "--use-device-runtime")
        raise TargetError(f"target {target}: --use-device-runtime, but the probe found none of "
                          f"{', '.join(PACKAGES)} installed there; name one with --runtime, e.g. {EXAMPLES}")

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def companions(self) -> tuple[str, ...]:
        """Requirements the release installs beside (compat's table: tflite-runtime 2.14 needs numpy<2)."""
        numpy = install_limits(self.package).get("numpy")
        return (f"numpy{numpy}",) if numpy else ()

    @property
    def tflite_backend(self) -> str | None:
        """``cllnn-bench --tflite-backend`` for this pin; None for onnxruntime (its own backend)."""
        return None if self.package == ORT_PACKAGE else self.package

    def check_python(self, target: str, python: tuple[int, ...]) -> None:
        """A ``TargetError`` before any download when no wheel of the package exists for ``python``."""
        newest = install_limits(self.package).get("newest_python")
        if newest and python[:2] > tuple(int(p) for p in newest.split(".")):
            raise TargetError(f"target {target}: {self.origin} {self.requirement}: {self.package} has wheels for "
                              f"CPython <= {newest} only, and the device runs Python "
                              f"{'.'.join(map(str, python))}; give it a Python <= {newest}, or pin "
                              f"{LITERT_PACKAGE} (the same Interpreter, for every current Python)")

    def refusal(self, needs: RuntimeNeeds) -> str | None:
        """Why this release cannot load a file of ``needs`` (compat's table), None when it can. A
        TFLite file says nothing of onnxruntime, and the other way round: not this pin's file."""
        return refusal(needs, self.package, self.version) if self.package in needs.oldest else None

    def __str__(self) -> str:
        return self.requirement

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "from": self.origin}


@dataclass(frozen=True)
class DeviceRuntime:
    """``--use-device-runtime``: the pin is what the probe finds (``RuntimePin.of_device``)."""


USE_DEVICE_RUNTIME = DeviceRuntime()
RuntimeChoice = RuntimePin | DeviceRuntime | None  # None: the versions the files were verified with
