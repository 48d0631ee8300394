"""Artefacts opened once: a manifest read (and its signature checked) once, each file read and hashed once.

``Artifacts.open(directory, trusted_key)`` is the one place the runtime reads a ``manifest.json`` and
the one place it decides signed or unsigned: without a key the manifest is parsed; with one, its
signature (``manifest.sig``) is checked on the very bytes that are then parsed. ``Artifacts.written``
wraps a manifest a caller holds already (``cllnn-export run`` passes convert's on: nothing is read).

``Artifacts.file(name)`` is an ``ArtifactFile``: the entry, and the file's bytes, read once through
``contained`` (never through a symlink) and hashed once; parity, bench, select and deploy all take
those bytes, so a file is hashed once however many times it is loaded, and the bytes that were
checked are the bytes run. A file that does not match is refused by ``refused``: a ``ManifestError``,
or a ``SignatureError`` when the manifest was signed (a file changed after signing).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runtime.artifacts.manifest import (
    MANIFEST_NAME,
    ArtifactEntry,
    Manifest,
    ManifestError,
    contained,
    manifest_file,
    open_contained,
    parse_manifest,
    read_manifest_at,
    sha256_bytes,
)
from runtime.artifacts.signing import (
    TrustedKey,
    TrustedKeyLike,
    check_signed,
    load_trusted_key,
    read_signature,
)
from runtime.errors import SignatureError

Missing = Callable[[Path], Exception]


@dataclass(frozen=True)
class ArtifactFile:
    """One file a manifest lists, read once and checked against its SHA-256: the bytes a backend runs.

    ``entry`` is the file's manifest entry (its tensor specs and op list); None for a stage probe or a C
    source, which the manifest lists by checksum only.
    """

    path: Path
    data: bytes
    entry: ArtifactEntry | None = None
    signed: bool = False  # listed in a manifest whose signature was checked

    @property
    def size(self) -> int:
        return len(self.data)


class Artifacts:
    """A directory of exported files and its manifest, opened once (see the module docstring)."""

    def __init__(self, directory: Path, manifest: Manifest, *, raw: bytes | None = None,
                 signature: bytes | None = None, trusted_key: TrustedKey | None = None) -> None:
        self.directory = directory
        self.manifest = manifest
        self.raw = raw  # the manifest's bytes as read (None: a manifest held in memory)
        self.signature = signature  # manifest.sig's bytes, when the directory holds one
        self.trusted_key = trusted_key  # set: the signature was checked with it
        self._files: dict[str, ArtifactFile] = {}

    @classmethod
    def open(cls, location: str | os.PathLike[str], trusted_key: TrustedKeyLike | None = None, *,
             directory: str | os.PathLike[str] | None = None, missing: Missing | None = None) -> Artifacts:
        """Read the manifest at ``location`` (a file, or the one in a directory) once; with
        ``trusted_key``, only if it is signed by that key (else ``SignatureError``). Files are read
        from ``directory`` (default: the manifest's own). A missing manifest raises ``missing(path)``."""
        key = None if trusted_key is None else load_trusted_key(trusted_key)  # a bad key: the caller's error
        if missing is None and key is not None:
            missing = _needs_signed
        path, raw = read_manifest_at(location, missing=missing)
        signature = read_signature(path)
        if key is not None:
            check_signed(raw, path, signature, key)
        manifest = parse_manifest(raw, path)
        return cls(Path(directory) if directory is not None else path.parent, manifest, raw=raw,
                   signature=signature, trusted_key=key)

    @classmethod
    def beside(cls, path: Path, trusted_key: TrustedKeyLike | None = None) -> Artifacts | None:
        """The artefacts whose ``manifest.json`` lies beside ``path``; None when there is none and no key
        asks for one (a file of the user's own, loaded as it is)."""
        manifest = path.parent / MANIFEST_NAME
        if os.path.lexists(manifest):  # a dangling symlink there is refused, not taken for "none"
            return cls.open(manifest, trusted_key)
        if trusted_key is not None:
            raise SignatureError(f"{path.name}: no {MANIFEST_NAME} beside it, and a trusted key was given: "
                                 f"only files listed in a signed manifest are loaded")
        return None

    @classmethod
    def written(cls, directory: str | os.PathLike[str], manifest: Manifest) -> Artifacts:
        """Artefacts whose manifest the caller wrote and holds (unsigned: nothing is read)."""
        return cls(Path(directory), manifest)

    @classmethod
    def at(cls, source: str | os.PathLike[str] | Artifacts, trusted_key: TrustedKeyLike | None = None,
           missing: Missing | None = None) -> Artifacts:
        """``source`` itself when it is opened already, else ``open(source, trusted_key)``."""
        if isinstance(source, Artifacts):
            if trusted_key is not None and source.trusted_key is None:
                raise SignatureError(f"{source.directory}: a trusted key was given, but these artefacts "
                                     f"were opened without checking a signature")
            return source
        return cls.open(source, trusted_key, missing=missing)

    @property
    def signed(self) -> bool:
        return self.trusted_key is not None

    @property
    def manifest_path(self) -> Path:
        return manifest_file(self.directory)

    def refused(self, exc: ManifestError, name: str) -> ManifestError | SignatureError:
        """What a file that is missing or does not match raises: the one signed-or-unsigned decision."""
        if not self.signed:
            return exc
        return SignatureError(f"{name} is not what was signed (a file changed after signing): {exc}")

    def file(self, name: str) -> ArtifactFile:
        """The listed artefact ``name`` (its entry and bytes, hashed once); else ``ManifestError`` /
        ``SignatureError``."""
        entry = self.manifest.entry_for(name)
        if entry is None:
            raise self.refused(ManifestError(f"{name} is not listed in the manifest"), name)
        return self._read(name, entry.sha256, entry)

    def probe(self, entry: ArtifactEntry) -> ArtifactFile | None:
        """The stage probe of ``entry``, checked against its checksum; None when the export left none."""
        probe = entry.details.probe
        if probe is None or probe.file is None or probe.sha256 is None:
            return None
        return self._read(probe.file, probe.sha256, None, what="stage probe")

    def check_listed(self) -> None:
        """Every file a user takes away (each artefact and its C sources) is present, a regular file
        inside the directory and matches its checksum; read and hashed once, kept for later loads."""
        if not self.manifest.artifacts:
            raise ManifestError(f"the manifest in {self.directory} lists no artefacts")
        for entry in self.manifest.artifacts:
            for name, sha256 in entry.delivered_files():
                self._read(name, sha256, entry if name == entry.file else None)

    def delivered(self, entry: ArtifactEntry) -> Iterator[ArtifactFile]:
        """The files of ``entry`` a deploy copies (the file, and its C sources), checked."""
        for name, sha256 in entry.delivered_files():
            yield self._read(name, sha256, entry if name == entry.file else None)

    def _read(self, name: str, sha256: str, entry: ArtifactEntry | None, what: str = "") -> ArtifactFile:
        cached = self._files.get(name)
        if cached is not None:
            if entry is not None and cached.entry is None:
                cached = self._files[name] = dataclasses.replace(cached, entry=entry)
            return cached
        try:
            path = contained(self.directory, name)
            with open_contained(self.directory, name) as handle:
                data = handle.read()
        except FileNotFoundError as exc:
            raise self.refused(ManifestError(
                f"{(what + ' ') if what else ''}{name} is listed in the manifest but missing from "
                f"{self.directory}; re-run cllnn-export convert"), name) from exc
        except ManifestError as exc:
            raise self.refused(exc, name) from exc
        except OSError as exc:
            raise self.refused(ManifestError(f"cannot read {self.directory / name}: {exc}"), name) from exc
        actual = sha256_bytes(data)
        if actual != sha256:
            raise self.refused(ManifestError(
                f"{(what + ' ') if what else ''}{path} does not match its manifest: SHA-256 {actual[:16]}... "
                f"expected {sha256[:16]}... (file modified or from another export); refusing to load; "
                f"re-run cllnn-export convert"), name)
        opened = ArtifactFile(path, data, entry, self.signed)
        self._files[name] = opened
        return opened


def load_verified_manifest(manifest: str | os.PathLike[str], trusted_key: TrustedKeyLike) -> Manifest:
    """The manifest at ``manifest`` (a file, or the one in a directory), after checking its signature."""
    return Artifacts.open(manifest, trusted_key).manifest


def _needs_signed(path: Path) -> Exception:
    return SignatureError(f"manifest not found: {path}; a trusted key needs a signed manifest")
