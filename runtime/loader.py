"""Load an exported model and run it: ``load(path).predict(images)``.

The backend is chosen by the file's content, not trusted from its suffix, and
the file is checked against a ``manifest.json`` beside it before any parser
sees it. This is the only module that knows every backend.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from runtime.errors import ModelLoadError
from runtime.litert import LiteRTModel
from runtime.manifest import (
    MANIFEST_NAME,
    ArtifactEntry,
    ManifestError,
    load_manifest,
    open_contained,
    verify_file,
)
from runtime.model import RuntimeModel
from runtime.onnxrt import NotOnnxError, OnnxRuntimeModel
from runtime.tflite_check import TFLITE_IDENTIFIER, looks_like_tflite


def load(
    path: str | Path,
    threads: int | None = None,
    manifest: str | Path | None = None,
) -> RuntimeModel:
    """Load a ``.tflite`` (LiteRT) or ``.onnx`` (ONNX Runtime) model for inference.

    The backend is chosen by content: a TFLite flatbuffer carries ``TFL3`` at
    bytes 4..8, anything else is tried as ONNX. If ``manifest`` is given, or a
    ``manifest.json`` lies beside the file, the file's SHA-256 must match its
    entry, else ``ManifestError``; the file must then be a regular file, not a
    symlink (``runtime.manifest.contained``: a manifest vouches for the files in
    its directory; without a manifest a symlink is followed). The bytes that
    were hashed are the bytes loaded, so a file swapped after the check is never
    run. An ONNX model that keeps weights in external files is refused
    (``ModelLoadError``): they would resolve against the working directory. ``threads`` sets
    the backend's intra-op threads (default: the backend's own choice, which
    is one thread for LiteRT and one per core for ONNX Runtime).
    """
    path = Path(path)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    entry = _verify_against_manifest(path, manifest)
    try:
        if entry is None:
            data = path.read_bytes()
        else:  # the file the manifest vouched for, never a symlink swapped in since
            with open_contained(path.parent, path.name) as handle:
                data = handle.read()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if entry is not None and hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ManifestError(f"{path} changed while it was being loaded; refusing to load")
    if looks_like_tflite(data):
        return LiteRTModel(path, data, threads, entry)
    try:
        return OnnxRuntimeModel(path, data, threads, entry)
    except NotOnnxError as exc:
        raise ModelLoadError(
            f"{path.name}: expected a TFLite flatbuffer ({TFLITE_IDENTIFIER!r} at bytes 4..8) or an "
            f"ONNX model; {exc}"
        ) from exc


def _verify_against_manifest(path: Path, manifest: str | Path | None) -> ArtifactEntry | None:
    if manifest is None:
        beside = path.parent / MANIFEST_NAME
        if not os.path.lexists(beside):  # a dangling symlink there is refused, not taken for "none"
            return None
        manifest = beside
    return verify_file(path, load_manifest(manifest))
