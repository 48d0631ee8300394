"""Artefacts are opened once: counted on the real code path with spies (the real functions run)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import runtime
from runtime.artifacts import manifest as manifest_module
from runtime.artifacts import opened as opened_module

NAMES = ("fp32.tflite", "int8.tflite", "fp32.onnx", "int8.onnx")


def _spy(monkeypatch: pytest.MonkeyPatch, calls: Counter[str], name: str) -> None:
    """Wrap ``runtime.artifacts.manifest.<name>`` so each call is counted and the real one still runs,
    in that module and in ``runtime.artifacts.opened`` (which opens artefacts with it)."""
    real: Callable[..., Any] = getattr(manifest_module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(manifest_module, name, counted)
    if hasattr(opened_module, name):
        monkeypatch.setattr(opened_module, name, counted)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts of the one manifest reader and of the two file hashes (bytes in hand, or a file streamed)."""
    counts: Counter[str] = Counter()
    for name in ("read_manifest_at", "sha256_bytes", "_sha256_of"):
        _spy(monkeypatch, counts, name)
    real_sha256 = hashlib.sha256

    def sha256(*args: Any, **kwargs: Any) -> Any:  # every SHA-256 taken in the process, whoever takes it
        counts["hashlib.sha256"] += 1
        return real_sha256(*args, **kwargs)

    monkeypatch.setattr(hashlib, "sha256", sha256)
    return counts


@pytest.mark.parametrize("name", NAMES)
def test_load_reads_the_manifest_once_and_hashes_the_file_once(
    artifacts: Path, calls: Counter[str], name: str
) -> None:
    model = runtime.load(artifacts / name)
    assert model.path == artifacts / name
    assert calls["read_manifest_at"] == 1, calls
    assert calls["sha256_bytes"] + calls["_sha256_of"] == 1, calls
    assert calls["hashlib.sha256"] == 1, calls  # main (a8fda90) hashed each file twice here


def test_a_changed_file_is_still_refused_after_one_hash(artifacts: Path, calls: Counter[str]) -> None:
    path = artifacts / "int8.tflite"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(manifest_module.ManifestError, match="does not match its manifest"):
        runtime.load(path)
    assert calls["sha256_bytes"] + calls["_sha256_of"] == 1, calls
