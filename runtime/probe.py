"""What a device has, as one JSON object on stdout: ``python3 probe.py`` on a machine with nothing
installed, before anything is sent to it (``cllnn-export target probe`` does this through any target).

Standard library only. Run as a file, it imports ``machine.py`` from beside itself (the host sends
runtime/machine.py with it: one CPU-class rule, the one every benchmark record uses, and no copy of
it here); imported as ``runtime.probe`` (``python -m runtime.probe``), the package's own. The fields:
the OS and its kernel, the CPU (``runtime.machine.CpuInfo.record``'s fields and the core count), the
Python running this, the C library (glibc's version, None on musl), the free disk in the current
directory (the device's working directory), and the version of each runtime in ``RUNTIMES`` that is
installed (None: not installed). ``export.targets.probe`` validates it strictly on the host.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from importlib import metadata
from typing import Any

if __package__:
    from runtime.machine import cpu_info
else:  # a file on a bare device: runtime/machine.py was sent beside it (found even under -P / -I)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import cpu_info  # type: ignore[no-redef]

PROBE_VERSION = 1
# The distributions a device may already have that the toolkit runs on (by their names on the index).
RUNTIMES = ("ai-edge-litert", "tflite-runtime", "onnxruntime", "numpy", "tflite-micro", "cllnn-edge")


def probe(directory: str = ".") -> dict[str, Any]:
    """This machine's facts (the object ``python3 probe.py`` prints)."""
    cpu = cpu_info()
    return {
        "probe_version": PROBE_VERSION,
        "system": platform.system(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu": {**cpu.record(), "cpu_count": os.cpu_count()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "glibc": glibc_version(),
        "directory": os.path.abspath(directory),
        "disk_free_bytes": shutil.disk_usage(directory).free,
        "packages": {name: installed_version(name) for name in RUNTIMES},
    }


def glibc_version() -> str | None:
    """glibc's version ("2.36"), the one manylinux wheels are built against; None on another C library."""
    try:
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
    except (ValueError, OSError, AttributeError):  # not a glibc system (musl), or no confstr (not POSIX)
        return None
    return version if name == "glibc" and version else None


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    json.dump(probe(), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
