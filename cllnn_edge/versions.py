"""Library versions that decide the numbers, echoed into every report and manifest."""

from __future__ import annotations

import platform
from importlib import metadata

DISTRIBUTIONS = (
    "cllnn-edge",
    "numpy",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
)


def library_versions() -> dict[str, str]:
    """Python and each installed distribution's version (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
