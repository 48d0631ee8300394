"""The device a TARGET names, opened with its transport's defaults: the one place that knows every
transport (as ``runtime.loader`` is the one that knows every backend)."""

from __future__ import annotations

from pathlib import Path

from export.targets.device import Device, cache_home
from export.targets.emulated import EmulatedDevice
from export.targets.local import LocalDevice
from export.targets.spec import EMULATED, LOCAL, SSH, TargetSpec
from export.targets.ssh import SshDevice


def open_device(spec: TargetSpec) -> Device:
    """``spec``'s device. An emulated one is set up on first use (its arm64 root made and cached)."""
    if spec.kind == SSH:
        return SshDevice(spec)
    if spec.kind == EMULATED:
        return EmulatedDevice(spec)
    assert spec.kind == LOCAL, spec  # parse_target makes no other kind
    return LocalDevice(spec, local_root())


def local_root() -> Path:
    """``local``'s working directory: under the host's cache, as a remote device's is under its home."""
    return cache_home() / "local-device"
