"""Load an exported model and run it: ``load(path).predict(images)``.

The backend is chosen by the file's content, not trusted from its suffix, and
the file is checked against a ``manifest.json`` beside it before any parser
sees it. This is the only module that knows every backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import ModelLoadError, SignatureError
from runtime.backends.litert import LiteRTModel
from runtime.artifacts.manifest import (
    BACKENDS,
    LITERT,
    MANIFEST_NAME,
    ONNXRUNTIME,
    TFLM,
    ArtifactEntry,
    Manifest,
    ManifestError,
    load_manifest,
    open_contained,
    verify_file,
)
from runtime.backends.model import RuntimeModel
from runtime.backends.onnxrt import NotOnnxError, OnnxRuntimeModel
from runtime.backends.tflite_check import TFLITE_IDENTIFIER, looks_like_tflite

if TYPE_CHECKING:
    from runtime.artifacts.signing import TrustedKeyLike


def load(
    path: str | Path,
    threads: int | None = None,
    manifest: str | Path | None = None,
    trusted_key: TrustedKeyLike | None = None,
    backend: str | None = None,
) -> RuntimeModel:
    """Load a ``.tflite`` (LiteRT) or ``.onnx`` (ONNX Runtime) model for inference.

    The backend is chosen by content: a TFLite flatbuffer carries ``TFL3`` at
    bytes 4..8, anything else is tried as ONNX. A ``.tflite`` runs on
    TensorFlow Lite Micro's kernels (``runtime.backends.tflm``, the ``tflm`` extra)
    when its manifest entry's ``runtime`` says ``"tflm"`` or ``backend="tflm"``
    is asked for; ``backend`` (one of ``BACKENDS``) must otherwise agree with
    the content. If ``manifest`` is given, or a
    ``manifest.json`` lies beside the file, the file's SHA-256 must match its
    entry, else ``ManifestError``; the file must then be a regular file, not a
    symlink (``runtime.artifacts.manifest.contained``: a manifest vouches for the files in
    its directory; without a manifest a symlink is followed). The bytes that
    were hashed are the bytes loaded, so a file swapped after the check is never
    run. An ONNX model that keeps weights in external files is refused
    (``ModelLoadError``): they would resolve against the working directory. ``threads`` sets
    the backend's intra-op threads (default: the backend's own choice, which
    is one thread for LiteRT and one per core for ONNX Runtime).

    With ``trusted_key`` (a public key's PEM file or bytes, or a
    ``runtime.artifacts.signing.TrustedKey``), the manifest is required and must carry
    a signature by that key (``manifest.sig`` beside it, ``cllnn-export
    sign``); a missing or wrong signature, or a file or manifest changed
    after signing, raises ``SignatureError`` (a ``ModelLoadError``). Checking
    needs the ``cryptography`` package (``pip install 'cllnn-edge[signing]'``).
    """
    path = Path(path)
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    listing = _manifest_for(path, manifest, trusted_key)
    try:
        data, entry = (path.read_bytes(), None) if listing is None else _read_listed(path, *listing)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    backend = backend or (entry.runtime if entry is not None else None)
    if looks_like_tflite(data):
        if backend == TFLM:
            from runtime.backends.tflm import TFLMModel  # tflite-micro only where a file asks for it

            return TFLMModel(path, data, entry)
        if backend not in (None, LITERT):
            raise ModelLoadError(f"{path.name}: a TFLite file runs on {LITERT} or {TFLM}, not {backend}")
        return LiteRTModel(path, data, threads, entry)
    if backend not in (None, ONNXRUNTIME):
        raise ModelLoadError(f"{path.name}: not a TFLite flatbuffer, so it cannot run on {backend}")
    try:
        return OnnxRuntimeModel(path, data, threads, entry)
    except NotOnnxError as exc:
        raise ModelLoadError(
            f"{path.name}: expected a TFLite flatbuffer ({TFLITE_IDENTIFIER!r} at bytes 4..8) or an "
            f"ONNX model; {exc}"
        ) from exc


def _manifest_for(
    path: Path, manifest: str | Path | None, trusted_key: TrustedKeyLike | None
) -> tuple[Manifest, bool] | None:
    """The manifest that vouches for ``path`` (signature checked when a key is given) and whether it
    was signed; None when there is none and none is required."""
    if manifest is None:
        beside = path.parent / MANIFEST_NAME
        if not os.path.lexists(beside):  # a dangling symlink there is refused, not taken for "none"
            if trusted_key is not None:
                raise SignatureError(f"{path.name}: no {MANIFEST_NAME} beside it, and a trusted key was given: "
                                     f"only files listed in a signed manifest are loaded")
            return None
        manifest = beside
    if trusted_key is None:
        return load_manifest(manifest), False
    from runtime.artifacts.signing import load_verified_manifest  # cryptography only when a key is given

    return load_verified_manifest(manifest, trusted_key), True


def _read_listed(path: Path, listing: Manifest, signed: bool) -> tuple[bytes, ArtifactEntry]:
    """``path``'s bytes, read once and never through a symlink, and its entry once those bytes hash
    to it (the bytes hashed are the bytes run); else ``ManifestError``, or ``SignatureError`` when
    the manifest was signed."""
    try:
        with open_contained(path.parent, path.name) as handle:
            data = handle.read()
        return data, verify_file(path, listing, data)
    except ManifestError as exc:
        if signed:
            raise SignatureError(f"{path.name} is not what was signed: {exc}") from exc
        raise
