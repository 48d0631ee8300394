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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
    TFLM,
    is_plain_name,
    validated_document,
)

MANIFEST_NAME = "manifest.json"

@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: how to feed it or read it back."""

    name: str
    shape: tuple[int, ...]  # -1 for a dynamic dimension (the batch)
    dtype: str  # numpy dtype name: "float32", "uint8", "int8"
    scale: float | None = None  # quantization: real = scale * (q - zero_point)
    zero_point: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(
            name=str(data["name"]),
            shape=tuple(int(d) for d in data["shape"]),
            dtype=str(data["dtype"]),
            scale=None if data.get("scale") is None else float(data["scale"]),
            zero_point=None if data.get("zero_point") is None else int(data["zero_point"]),
        )


@dataclass(frozen=True)
class CheckRecord:
    """One export-time check of a file: its verdict, what was measured, what was expected."""

    passed: bool
    value: Any
    expected: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckRecord:
        return cls(passed=bool(data["passed"]), value=data.get("value"), expected=str(data.get("expected", "")))


@dataclass(frozen=True)
class ProbeRecord:
    """An artefact's stage probe: the same graph with one named output per stage, or why there is none."""

    file: str | None = None  # relative to the manifest's directory (probes/<artefact file>)
    sha256: str | None = None
    size: int | None = None
    stages: tuple[str, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.file is None:
            return {"error": self.error or "no probe"}
        return {"file": self.file, "sha256": self.sha256, "size": self.size, "stages": list(self.stages),
                "outputs": [spec.to_dict() for spec in self.outputs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeRecord:
        if "file" not in data:
            return cls(error=str(data.get("error", "no probe")))
        return cls(file=str(data["file"]), sha256=str(data["sha256"]), size=int(data["size"]),
                   stages=tuple(str(s) for s in data.get("stages", ())),
                   outputs=tuple(TensorSpec.from_dict(t) for t in data.get("outputs", ())))


@dataclass(frozen=True)
class ListedFile:
    """A file written beside an artefact (its C sources), relative to the manifest's directory."""

    file: str
    sha256: str
    size: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ListedFile:
        return cls(file=str(data["file"]), sha256=str(data["sha256"]), size=int(data["size"]))


MCU_DIR = "mcu"  # beside the artefacts: a microcontroller file's C sources (McuRecord.sources)


@dataclass(frozen=True)
class McuRecord:
    """A microcontroller file's memory budget, measured on TFLite Micro, and its C sources
    (``manifest.json``: ``details.mcu``; ``export.formats.mcu`` measures and writes it)."""

    flash_bytes: int  # the model's bytes, as the C array holds them in flash
    arena_min_bytes: int  # the smallest tensor arena TFLM ran the file in
    arena_bytes: int  # what to allocate: the minimum plus ``runtime.backends.tflm.arena_margin``
    stage_activation_bytes: dict[str, int] = field(default_factory=dict)  # stage -> its peak op working set
    sources: tuple[ListedFile, ...] = ()  # cllnn_model.h / cllnn_model.cc

    @property
    def arena_margin_bytes(self) -> int:
        return self.arena_bytes - self.arena_min_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sources": [asdict(source) for source in self.sources]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> McuRecord:
        return cls(flash_bytes=int(data["flash_bytes"]), arena_min_bytes=int(data["arena_min_bytes"]),
                   arena_bytes=int(data["arena_bytes"]),
                   stage_activation_bytes={str(k): int(v) for k, v in data.get("stage_activation_bytes", {}).items()},
                   sources=tuple(ListedFile.from_dict(s) for s in data.get("sources", ())))


@dataclass(frozen=True)
class ArtifactDetails:
    """What the export measured and checked about one file (``manifest.json``: ``details``)."""

    description: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # against the trained model
    checks: dict[str, CheckRecord] = field(default_factory=dict)  # the export-time gate
    reproducible: bool | None = None  # same inputs give the same bytes?
    reproducibility: str = ""
    probe: ProbeRecord | None = None
    # How the file was quantized: graph, calibration, recipe (export.pipeline.convert.quantization_record).
    quantization: dict[str, Any] = field(default_factory=dict)
    mcu: McuRecord | None = None  # a file for microcontrollers (runtime "tflm"): memory and C sources

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "description": self.description,
            "metrics": dict(self.metrics),
            "checks": {name: asdict(check) for name, check in self.checks.items()},
            "reproducible": self.reproducible,
            "reproducibility": self.reproducibility,
        }
        if self.probe is not None:
            data["probe"] = self.probe.to_dict()
        if self.quantization:
            data["quantization"] = self.quantization
        if self.mcu is not None:
            data["mcu"] = self.mcu.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactDetails:
        probe = data.get("probe")
        reproducible = data.get("reproducible")
        return cls(
            description=str(data.get("description", "")),
            metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
            checks={str(k): CheckRecord.from_dict(v) for k, v in data.get("checks", {}).items()},
            reproducible=None if reproducible is None else bool(reproducible),
            reproducibility=str(data.get("reproducibility", "")),
            probe=None if probe is None else ProbeRecord.from_dict(probe),
            quantization=dict(data.get("quantization") or {}),
            mcu=None if data.get("mcu") is None else McuRecord.from_dict(data["mcu"]),
        )


@dataclass(frozen=True)
class CheckSetRecord:
    """The check set beside the artefacts (``manifest.json``: ``check_set``).

    A few hundred labelled images and the trained model's outputs on them,
    kept at export time so a device can check its files without TensorFlow
    (``runtime.artifacts.checkset``, ``cllnn-bench verify``).
    """

    file: str  # relative to the manifest's directory
    sha256: str
    size: int
    images: int
    source: str  # the data source the images come from ("embedded", a path, ...)
    split: str  # the split they come from: the first ``images`` of it
    stages: tuple[str, ...]  # the reference outputs it holds, in the model's order; "output" = probabilities

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": list(self.stages)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckSetRecord:
        return cls(file=str(data["file"]), sha256=str(data["sha256"]), size=int(data["size"]),
                   images=int(data["images"]), source=str(data["source"]), split=str(data["split"]),
                   stages=tuple(str(s) for s in data["stages"]))


@dataclass(frozen=True)
class ArtifactEntry:
    """One exported file as the manifest records it."""

    file: str  # relative to the manifest's directory
    format: str  # a name of the format registry (export.formats.registry)
    runtime: str  # one of ``BACKENDS``
    precision: str  # "float32", "float16", "dynamic-int8", "int8"
    sha256: str
    size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: dict[str, int] = field(default_factory=dict)  # op type -> count
    details: ArtifactDetails = field(default_factory=ArtifactDetails)

    def delivered_files(self) -> list[tuple[str, str]]:
        """(file, SHA-256) of what a user takes away: the file, and its C sources where it has them."""
        sources = self.details.mcu.sources if self.details.mcu is not None else ()
        return [(self.file, self.sha256), *((source.file, source.sha256) for source in sources)]

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "details": self.details.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactEntry:
        return cls(
            file=str(data["file"]),
            format=str(data["format"]),
            runtime=str(data["runtime"]),
            precision=str(data["precision"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            ops={str(k): int(v) for k, v in data.get("ops", {}).items()},
            details=ArtifactDetails.from_dict(data.get("details", {})),
        )


@dataclass(frozen=True)
class Manifest:
    """All artefacts of one export, with what produced them."""

    artifacts: tuple[ArtifactEntry, ...]
    metadata: dict[str, Any] = field(default_factory=dict)  # config, versions, unroll report
    check_set: CheckSetRecord | None = None  # None: exported without one (or before it existed)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "schema_version": SCHEMA_VERSION,
            "artifacts": [a.to_dict() for a in self.artifacts],
            **self.metadata,
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
            metadata=metadata,
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


def verify_file(path: str | os.PathLike[str], manifest: Manifest, data: bytes | None = None) -> ArtifactEntry:
    """Check ``path`` (or ``data``, its bytes already read through ``open_contained``) against its
    manifest entry; raise ManifestError on any mismatch.

    The file must be listed under its own name and be a regular file (``contained``): a
    symlink beside a manifest is refused, whatever it points to. With ``data`` the file is
    hashed once, from the very bytes the caller will run."""
    path = Path(path)
    entry = manifest.entry_for(path.name)
    if entry is None:
        raise ManifestError(f"{path.name} is not listed in the manifest")
    actual = sha256_contained(path.parent, path.name) if data is None else sha256_bytes(data)
    if actual != entry.sha256:
        raise ManifestError(
            f"{path} does not match its manifest: SHA-256 {actual[:16]}... expected "
            f"{entry.sha256[:16]}... (file modified or from another export); refusing to load"
        )
    return entry
