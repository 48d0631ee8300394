"""The manifest beside exported models: what each file is, and its checksum.

Written by ``export`` (which has TensorFlow), read here (which must not), so
the schema lives in the bottom layer. ``manifest.json`` holds one entry per
artefact with its SHA-256, size, format, precision and input/output spec,
plus the configuration and library versions that produced it, and the
check set (``check_set``: file, SHA-256, size) a device verifies them with.

``load_manifest`` reads a manifest as untrusted input: bounded in size and
nesting and validated against its schema as a whole (``runtime.artifacts.manifest_schema``)
before any field is used. Every file a manifest names is opened through
``contained(directory, name)``: a plain relative name inside the artefacts
directory, no part of it a symlink, a regular file (see ``contained`` for why
symlinks are refused rather than resolved).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from runtime.errors import ManifestError
from runtime.artifacts.manifest_schema import (  # noqa: F401  (BACKENDS .. TFLM: re-exported)
    BACKENDS,
    LITERT,
    MAX_MANIFEST_BYTES,
    ONNXRUNTIME,
    PLAIN_NAME_RULE,
    SCHEMA_VERSION,
    TFLITE_RUNTIME,
    TFLM,
    is_plain_name,
    validated_document,
)
from runtime.artifacts.records import (  # noqa: F401  (the records: re-exported, a manifest is made of them)
    MCU_DIR,
    ArtifactDetails,
    ArtifactEntry,
    CheckRecord,
    CheckSetRecord,
    ListedFile,
    ManifestMetadata,
    McuRecord,
    ProbeRecord,
    RuntimeNeeds,
    SourceModel,
    TensorSpec,
)

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """All artefacts of one export, with what produced them.

    ``metadata`` may be given as its JSON object (as ``export.pipeline.convert`` writes it); it is kept
    as a ``ManifestMetadata``.
    """

    artifacts: tuple[ArtifactEntry, ...]
    metadata: ManifestMetadata = field(default_factory=ManifestMetadata)
    check_set: CheckSetRecord | None = None  # None: exported without one (or before it existed)

    def __post_init__(self) -> None:
        if isinstance(self.metadata, Mapping):
            object.__setattr__(self, "metadata", ManifestMetadata.from_dict(dict(self.metadata)))

    def to_dict(self) -> dict[str, Any]:
        data = {
            "schema_version": SCHEMA_VERSION,
            "artifacts": [a.to_dict() for a in self.artifacts],
            **self.metadata.to_dict(),
        }
        if self.check_set is not None:
            data["check_set"] = self.check_set.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema_version must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}"
            )
        metadata = {k: v for k, v in data.items() if k not in ("schema_version", "artifacts", "check_set")}
        check_set = data.get("check_set")
        return cls(
            artifacts=tuple(ArtifactEntry.from_dict(a) for a in data["artifacts"]),
            metadata=ManifestMetadata.from_dict(metadata),
            check_set=None if check_set is None else CheckSetRecord.from_dict(check_set),
        )

    def listed_files(self) -> list[tuple[str, str]]:
        """(file, SHA-256) of every file the manifest vouches for: each artefact and its C sources,
        the stage probes, the check set."""
        listed = [item for entry in self.artifacts for item in entry.delivered_files()]
        listed += [(entry.details.probe.file, entry.details.probe.sha256) for entry in self.artifacts
                   if entry.details.probe is not None and entry.details.probe.file is not None]
        if self.check_set is not None:
            listed.append((self.check_set.file, self.check_set.sha256))
        return listed

    def entry_for(self, file_name: str) -> ArtifactEntry | None:
        return next((a for a in self.artifacts if a.file == file_name), None)

    def entries_of(self, formats: Sequence[str] | None, flag: str = "--formats") -> tuple[ArtifactEntry, ...]:
        """The entries of ``formats`` (names as the entries' ``format`` records them; None: every entry), in
        the manifest's order. A name it does not hold is a ``ManifestError`` naming what it holds, so a typo
        never shrinks a check to nothing."""
        if formats is None:
            return self.artifacts
        held = list(dict.fromkeys(entry.format for entry in self.artifacts))
        unknown = [name for name in formats if name not in held]
        if unknown or not formats:
            raise ManifestError(f"{flag}: {', '.join(unknown) or 'no format named'}: not in the manifest; it holds "
                                f"{', '.join(held)} (comma-separated, as its entries' format)")
        return tuple(entry for entry in self.artifacts if entry.format in formats)


def format_names(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A format list as a user writes it (``"tflite-int8, onnx-fp32"``, or a list of names) -> the names,
    each once, in order; None stays None ("all"). The one parser of a list of format names: the export
    registry (``export.formats.registry.parse_formats``) and the device's ``--formats`` both use it."""
    if text is None:
        return None
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text)]
    return tuple(dict.fromkeys(name for name in names if name))


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a manifest.json (or the one inside a directory), validated as a whole; else ``ManifestError``.

    The file is read only if it is a regular file (not a symlink, FIFO or device) of at most
    ``MAX_MANIFEST_BYTES``; errors name the manifest and the field
    (``.../manifest.json: artifacts[2].ops: expected an object of op name -> count, got a list``).
    """
    path, raw = read_manifest_at(path)
    return parse_manifest(raw, path)


def manifest_file(location: str | os.PathLike[str]) -> Path:
    """``location`` itself, or the manifest.json inside it if it is a directory."""
    path = Path(location)
    return path / MANIFEST_NAME if path.is_dir() else path


def read_manifest_at(
    location: str | os.PathLike[str], missing: Callable[[Path], Exception] | None = None
) -> tuple[Path, bytes]:
    """The manifest's path (``manifest_file``) and its bytes (``read_manifest_bytes``). A missing
    file raises ``missing(path)`` (default: ``ManifestError``), an unreadable one ``ManifestError``."""
    path = manifest_file(location)
    try:
        return path, read_manifest_bytes(path)
    except FileNotFoundError as exc:
        raise (missing or _not_found)(path) from exc
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc


def _not_found(path: Path) -> Exception:
    return ManifestError(f"manifest not found: {path}")


def read_manifest_bytes(path: str | os.PathLike[str]) -> bytes:
    """A manifest file's bytes, if it is a regular file (not a symlink, FIFO or device), at most
    ``MAX_MANIFEST_BYTES`` + 1 of them (``parse_manifest`` refuses more); OSError otherwise."""
    with _open_regular(Path(path)) as handle:
        return handle.read(MAX_MANIFEST_BYTES + 1)


def parse_manifest(raw: bytes, path: str | os.PathLike[str]) -> Manifest:
    """A manifest from its bytes (``path`` names it in errors), validated as a whole first
    (``runtime.artifacts.manifest_schema``): what ``runtime.artifacts.signing`` uses, so the bytes whose signature
    was checked are the bytes parsed."""
    return Manifest.from_dict(validated_document(raw, str(path)))


def contained(directory: str | os.PathLike[str], name: str) -> Path:
    """``directory / name`` for a file a manifest names, after checking it may be opened; else ``ManifestError``.

    ``name`` must be a plain relative name (``runtime.artifacts.manifest_schema.PLAIN_NAME``: no absolute
    path, ``..``, backslash or drive letter) and no part of ``directory / name`` below
    ``directory`` may be a symlink; what exists there must be a regular file (a FIFO would block
    the reader). A missing file is returned as is, for the caller to report.

    Symlinks are refused, not resolved and required inside: a manifest vouches for the files
    in its directory, and a link makes what is read depend on a second place that can change
    between the check and the open; convert and select never write links. (``directory``
    itself may be reached through links, e.g. a ``current -> v3`` deploy switch.) Callers open
    with ``open_contained``, which also refuses a link swapped in after this check.
    """
    directory = Path(directory)
    if not is_plain_name(name):
        raise ManifestError(f"{directory}: refusing the file name {name!r}: expected {PLAIN_NAME_RULE}")
    path = directory
    for part in name.split("/"):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return directory / name
        except OSError as exc:
            raise ManifestError(f"cannot inspect {path}: {exc}") from exc
        if stat.S_ISLNK(mode):
            raise ManifestError(
                f"{path} is a symlink; a file a manifest names must be a regular file inside {directory} "
                f"(symlinks are refused, not followed)"
            )
    if not stat.S_ISREG(mode):
        raise ManifestError(f"{path} is not a regular file")
    return path


def open_contained(directory: str | os.PathLike[str], name: str) -> BinaryIO:
    """Open ``contained(directory, name)`` for reading, refusing a symlink swapped in since the check."""
    return _open_regular(contained(directory, name))


def sha256_contained(directory: str | os.PathLike[str], name: str) -> str:
    """Hex SHA-256 of a file a manifest names (``contained``)."""
    with open_contained(directory, name) as handle:
        return _sha256_of(handle)


def _open_regular(path: Path) -> BinaryIO:
    """Open ``path`` read-only without following a final symlink and without blocking on a FIFO;
    refuse anything but a regular file. (``O_NOFOLLOW`` is POSIX; elsewhere the ``lstat`` of
    ``contained`` is the check.)"""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink():
            raise ManifestError(f"{path} is a symlink; refusing to follow it") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ManifestError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks so large models need little memory."""
    with open(path, "rb") as handle:
        return _sha256_of(handle)


def _sha256_of(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes already read: the one hash of a file ``runtime.load`` runs."""
    return hashlib.sha256(data).hexdigest()
