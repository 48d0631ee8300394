"""Load an exported model and run it: ``load(path).predict(images)``.

The backend is chosen by the file's content, not trusted from its suffix, and
the file is checked against a ``manifest.json`` beside it before any parser
sees it. This is the only module that knows every backend.
"""

from __future__ import annotations

from pathlib import Path

from runtime.artifacts.compat import builtin_name, needs_of_onnx, needs_of_tflite
from runtime.artifacts.manifest import BACKENDS, LITERT, ONNXRUNTIME, TFLITE_RUNTIME, TFLM, RuntimeNeeds
from runtime.artifacts.opened import ArtifactFile, Artifacts
from runtime.artifacts.signing import TrustedKeyLike
from runtime.backends.litert import LiteRTModel, checked_interpreter, op_dtypes_of, op_signatures
from runtime.backends.model import RuntimeModel
from runtime.backends.onnx_ops import onnx_opsets
from runtime.backends.onnxrt import NotOnnxError, OnnxRuntimeModel
from runtime.backends.tflite_check import TFLITE_IDENTIFIER, looks_like_tflite, operator_codes
from runtime.backends.tflm import TFLMModel  # tflite-micro itself is imported only when a file runs on it
from runtime.errors import ModelLoadError


def load(
    path: str | Path | ArtifactFile,
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
    is asked for; ``backend`` (one of ``BACKENDS``, or ``"tflite-runtime"``: a LiteRT file on
    tflite-runtime's Interpreter) must otherwise agree with the content. If ``manifest`` is given, or a
    ``manifest.json`` lies beside the file, the file's SHA-256 must match its
    entry, else ``ManifestError``; the file must then be a regular file, not a
    symlink (``runtime.artifacts.manifest.contained``: a manifest vouches for the files in
    its directory; without a manifest a symlink is followed). The bytes that
    were hashed are the bytes loaded, so a file swapped after the check is never
    run. An ONNX model that keeps weights in external files is refused
    (``ModelLoadError``): they would resolve against the working directory. ``threads`` sets
    the backend's intra-op threads (default: the backend's own choice, which
    is one thread for LiteRT and one per core for ONNX Runtime).

    ``path`` may also be an ``ArtifactFile`` (``runtime.artifacts.opened``): a file already read and
    checked against its manifest, as parity, bench and select hold them; it is loaded from those bytes.

    With ``trusted_key`` (a public key's PEM file or bytes, or a
    ``runtime.artifacts.signing.TrustedKey``), the manifest is required and must carry
    a signature by that key (``manifest.sig`` beside it, ``cllnn-export
    sign``); a missing or wrong signature, or a file or manifest changed
    after signing, raises ``SignatureError`` (a ``ModelLoadError``). Checking
    needs the ``cryptography`` package (``pip install 'cllnn-edge[signing]'``).
    """
    if backend is not None and backend not in (*BACKENDS, TFLITE_RUNTIME):
        raise ValueError(f"backend must be one of {', '.join((*BACKENDS, TFLITE_RUNTIME))} or None, "
                         f"got {backend!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    opened = path if isinstance(path, ArtifactFile) else open_file(Path(path), manifest, trusted_key)
    return _backend_model(opened, threads, backend)


def open_file(path: Path, manifest: str | Path | None, trusted_key: TrustedKeyLike | None) -> ArtifactFile:
    """``path`` read once: checked against the manifest that vouches for it (signed, with a key), or,
    when there is none and none is required, as it is."""
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    artifacts = Artifacts.beside(path, trusted_key) if manifest is None else Artifacts.open(manifest, trusted_key,
                                                                                directory=path.parent)
    if artifacts is not None:
        return artifacts.file(path.name)
    try:
        return ArtifactFile(path, path.read_bytes())
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc


def backend_for(runtime: str, tflite_backend: str | None) -> str | None:
    """``load``'s ``backend`` for a file whose manifest entry says ``runtime``, under a device command's
    ``--tflite-backend``: tflite-runtime's Interpreter for LiteRT's files when that is asked, else None (the
    file's own runtime: an ONNX or TFLM file is not LiteRT's to re-route)."""
    return TFLITE_RUNTIME if tflite_backend == TFLITE_RUNTIME and runtime == LITERT else None


def _backend_model(opened: ArtifactFile, threads: int | None, backend: str | None) -> RuntimeModel:
    """The backend for ``opened``'s bytes: by content, and by ``backend`` or its entry's runtime."""
    path, data, entry = opened.path, opened.data, opened.entry
    recorded = entry.runtime if entry is not None else None
    backend = recorded if backend is None or (backend == TFLITE_RUNTIME and recorded == TFLM) else backend
    if looks_like_tflite(data):
        if backend == TFLM:
            return TFLMModel(path, data, entry)
        if backend not in (None, LITERT, TFLITE_RUNTIME):
            raise ModelLoadError(f"{path.name}: a TFLite file runs on {LITERT}, {TFLITE_RUNTIME} or {TFLM}, "
                                 f"not {backend}")
        package = TFLITE_RUNTIME if backend == TFLITE_RUNTIME else None
        return LiteRTModel(path, data, threads, entry, package=package)
    if backend not in (None, ONNXRUNTIME):
        raise ModelLoadError(f"{path.name}: not a TFLite flatbuffer, so it cannot run on {backend}")
    try:
        return OnnxRuntimeModel(path, data, threads, entry)
    except NotOnnxError as exc:
        raise ModelLoadError(
            f"{path.name}: expected a TFLite flatbuffer ({TFLITE_IDENTIFIER!r} at bytes 4..8) or an "
            f"ONNX model; {exc}"
        ) from exc


def runtime_needs(data: bytes, name: str) -> RuntimeNeeds:
    """What a file asks of its runtime, read from its bytes: a TFLite file's operator codes and versions
    (from the flatbuffer, no interpreter) and its ops' dtype signatures (when an interpreter here can
    list them); an ONNX file's opsets and IR version. With the oldest runtime releases that load it
    (``runtime.artifacts.compat``): the manifest record's ``needs``, filled at convert time."""
    if not looks_like_tflite(data):
        return needs_of_onnx(*onnx_opsets(data))
    versions: dict[str, set[int]] = {}
    for code, version in operator_codes(data, name):
        versions.setdefault(builtin_name(code), set()).add(version)
    try:
        types = op_signatures(op_dtypes_of(checked_interpreter(data, name), name))
    except ModelLoadError:  # no interpreter here builds it (an older runtime): the op versions decide
        types = {}
    return needs_of_tflite({op: tuple(sorted(v)) for op, v in sorted(versions.items())}, types)
