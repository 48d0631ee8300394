"""Signed artefacts: an Ed25519 signature over ``manifest.json``, checked on the device with a public key.

The manifest holds every exported file's SHA-256 and size, and the check
set's; signing its exact bytes vouches for all of them. ``cllnn-export sign``
writes the signature beside the manifest (``manifest.sig``, a small JSON
document); ``runtime.load(path, trusted_key=...)``, ``cllnn-bench
--trusted-key``, ``cllnn-bench verify`` / ``select --trusted-key`` and
``cllnn-export parity --trusted-key`` check it before trusting any checksum
the manifest lists. The bytes whose signature is checked are the bytes parsed
(``load_verified_manifest``), so a manifest swapped after the check is never used.

The signed message is ``DOMAIN + manifest bytes``: the prefix keeps a
signature made here from being valid for anything else the same key signs.
The ``key_id`` and ``manifest_sha256`` in ``manifest.sig`` are not trusted;
they only let an error say whether the manifest changed or the key differs.

The library is ``cryptography`` (Ed25519), imported only when a key is
used, so ``import runtime`` works without it; it is the optional extra
``cllnn-edge[signing]``. Keys are PEM files: PKCS#8 private key (written
0600, unencrypted: keep it on the build host), SubjectPublicKeyInfo public key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Union

from runtime.atomic import write_json_atomic
from runtime.errors import SignatureError
from runtime.artifacts.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    manifest_file,
    parse_manifest,
    read_manifest_at,
    sha256_file,
)

SIGNATURE_SUFFIX = ".sig"  # manifest.json -> manifest.sig
SIGNATURE_NAME = Path(MANIFEST_NAME).with_suffix(SIGNATURE_SUFFIX).name
PRIVATE_KEY_NAME, PUBLIC_KEY_NAME = "cllnn-signing.key", "cllnn-signing.pub"
ALGORITHM = "ed25519"
VERSION = 1
DOMAIN = b"cllnn-edge signed manifest v1\x00"
TOOL = "cllnn-export sign"
_MAX_SIGNATURE_BYTES = 64 * 1024  # a signature document is ~400 bytes
_MAX_KEY_BYTES = 64 * 1024
INSTALL_HINT = "pip install 'cllnn-edge[signing]' (or: pip install cryptography)"


@dataclass(frozen=True)
class TrustedKey:
    """An Ed25519 public key a device trusts; ``key_id`` is the first 16 hex digits of its SHA-256."""

    key: Any  # cryptography's Ed25519PublicKey
    key_id: str
    source: str  # where it was read from, for messages

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.key.verify(signature, message)
        except _crypto().InvalidSignature:
            return False
        return True


TrustedKeyLike = Union[str, "os.PathLike[str]", bytes, TrustedKey]


@dataclass(frozen=True)
class KeyPair:
    """Where ``generate_keys`` wrote the two halves."""

    private: Path
    public: Path
    key_id: str


@dataclass(frozen=True)
class Signed:
    """What ``sign_artifacts`` signed and wrote."""

    manifest: Path
    signature: Path
    key_id: str
    manifest_sha256: str


def signature_path(manifest: str | os.PathLike[str]) -> Path:
    """The signature file of a manifest (or of the manifest inside a directory): ``manifest.sig``."""
    return manifest_file(manifest).with_suffix(SIGNATURE_SUFFIX)


# -- keys -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cryptography:
    """The parts of ``cryptography`` used here."""

    ed25519: ModuleType
    serialization: ModuleType
    InvalidSignature: type[Exception]


@functools.cache
def _crypto() -> _Cryptography:
    """``cryptography``, imported here alone (an optional extra), or a SignatureError saying how to install it."""
    try:
        import cryptography.exceptions, cryptography.hazmat.primitives.asymmetric.ed25519, cryptography.hazmat.primitives.serialization  # noqa: E401,E501
    except ImportError as exc:
        raise SignatureError(f"checking or making signatures needs the cryptography package: {INSTALL_HINT}") from exc
    primitives = cryptography.hazmat.primitives
    return _Cryptography(primitives.asymmetric.ed25519, primitives.serialization,
                         cryptography.exceptions.InvalidSignature)


def _key_id(public_key: Any) -> str:
    serialization = _crypto().serialization
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_trusted_key(key: TrustedKeyLike) -> TrustedKey:
    """A public key from a PEM file (path) or PEM bytes; ``SignatureError`` if it is not an Ed25519 public key."""
    if isinstance(key, TrustedKey):
        return key
    ed25519, serialization = _crypto().ed25519, _crypto().serialization
    source = "the key given" if isinstance(key, bytes) else str(key)
    pem = key if isinstance(key, bytes) else _read_small(Path(key), _MAX_KEY_BYTES, "trusted key")
    if b"PRIVATE KEY" in pem:
        raise SignatureError(f"trusted key {source} is a private key; give the public key "
                             f"({PUBLIC_KEY_NAME} from cllnn-export keygen): a device never needs the private one")
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"trusted key {source} is not a PEM public key ({exc})") from exc
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise SignatureError(f"trusted key {source} is a {type(public).__name__}, expected an Ed25519 public key")
    return TrustedKey(public, _key_id(public), source)


def load_signing_key(path: str | os.PathLike[str]) -> Any:
    """The Ed25519 private key in a PEM file (as ``generate_keys`` writes it)."""
    ed25519, serialization = _crypto().ed25519, _crypto().serialization
    pem = _read_small(Path(path), _MAX_KEY_BYTES, "signing key")
    if b"PRIVATE KEY" not in pem:
        raise SignatureError(f"signing key {path} is not a PEM private key (a public key cannot sign; "
                             f"give {PRIVATE_KEY_NAME} from cllnn-export keygen)")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"signing key {path} cannot be read ({exc}); encrypted keys are not supported") from exc
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"signing key {path} is a {type(private).__name__}, expected an Ed25519 private key")
    return private


def generate_keys(out_dir: str | os.PathLike[str]) -> KeyPair:
    """Write a new Ed25519 key pair into ``out_dir``: ``cllnn-signing.key`` (0600) and ``cllnn-signing.pub``.

    Refuses to replace an existing key (``SignatureError``): a lost private key
    cannot be recovered, and every device trusting its public key would need a new one.
    """
    ed25519, serialization = _crypto().ed25519, _crypto().serialization
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    if out_dir.exists() and not out_dir.is_dir():
        raise SignatureError(f"--out {out_dir} is a file; give a directory for the keys")
    existing = [str(p) for p in (private_path, public_path) if p.exists() or p.is_symlink()]
    if existing:
        raise SignatureError(f"{', '.join(existing)} already exist; keygen never replaces a key "
                             f"(move it away or give another --out)")
    out_dir.mkdir(parents=True, exist_ok=True)
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    _create_new(private_path, private_pem, 0o600)
    try:
        _create_new(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    return KeyPair(private_path, public_path, _key_id(private.public_key()))


def _create_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` complete or not at all, with ``mode`` from the start, never replacing a file."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.link(tmp, path)  # fails if path exists: no replacing a key
    except FileExistsError as exc:
        raise SignatureError(f"{path} already exists; keygen never replaces a key") from exc
    finally:
        tmp.unlink(missing_ok=True)


# -- signing (build host) ---------------------------------------------------------------------------
def sign_artifacts(artifacts_dir: str | os.PathLike[str], key: str | os.PathLike[str]) -> Signed:
    """Sign ``artifacts_dir/manifest.json`` with the private key in ``key``; writes ``manifest.sig``.

    Every file the manifest lists (artefacts, stage probes, the check set) is
    checked against its SHA-256 first, so a signature never vouches for a file
    that already differs (``ManifestError``). The signature replaces an earlier one atomically.
    """
    artifacts_dir = Path(artifacts_dir)
    if not artifacts_dir.is_dir():
        raise ManifestError(f"artifacts directory not found: {artifacts_dir}")
    private = load_signing_key(key)
    manifest_path, raw = read_manifest_at(
        artifacts_dir, missing=lambda path: ManifestError(f"manifest not found: {path}; run cllnn-export convert "
                                                          f"first"))
    manifest = parse_manifest(raw, manifest_path)
    check_signed_files(manifest, artifacts_dir)
    document = {
        "tool": TOOL,
        "version": VERSION,
        "algorithm": ALGORITHM,
        "signed_file": MANIFEST_NAME,
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "key_id": _key_id(private.public_key()),
        "signature": base64.b64encode(private.sign(DOMAIN + raw)).decode("ascii"),
    }
    written = write_json_atomic(signature_path(manifest_path), document)
    return Signed(manifest_path, written, document["key_id"], document["manifest_sha256"])


def check_signed_files(manifest: Manifest, artifacts_dir: Path) -> None:
    """Every file ``manifest`` lists is in ``artifacts_dir`` with its recorded SHA-256, else ``ManifestError``."""
    listed = manifest.listed_files()
    if not manifest.artifacts:
        raise ManifestError(f"the manifest in {artifacts_dir} lists no artefacts; nothing to sign")
    for name, sha256 in listed:
        path = artifacts_dir / name
        if not path.is_file():
            raise ManifestError(f"{name} is listed in the manifest but missing from {artifacts_dir}; not signing")
        if sha256_file(path) != sha256:
            raise ManifestError(f"{path} does not match its manifest checksum (modified after export); not signing")


# -- verifying (device) -----------------------------------------------------------------------------
def read_signature(manifest_path: Path) -> bytes | None:
    """The bytes of ``manifest_path``'s signature (``manifest.sig``), or None when it has none."""
    sig_path = signature_path(manifest_path)
    return _read_small(sig_path, _MAX_SIGNATURE_BYTES, "signature") if sig_path.is_file() else None


def check_signed(raw: bytes, manifest_path: Path, signature: bytes | None, trusted_key: TrustedKeyLike) -> None:
    """Check that ``raw`` (the bytes of ``manifest_path``) carries ``signature`` (``read_signature``'s)
    by ``trusted_key``; else ``SignatureError``."""
    if signature is None:
        raise SignatureError(
            f"{manifest_path} is not signed: no {signature_path(manifest_path).name} beside it, and a trusted "
            f"key was given (sign with cllnn-export sign {manifest_path.parent} --key {PRIVATE_KEY_NAME})"
        )
    verify_signature(raw, signature, manifest_path, trusted_key)


def verify_signature(raw: bytes, signature_doc: bytes, manifest_path: Path, trusted_key: TrustedKeyLike) -> None:
    """Check ``raw`` (the bytes of ``manifest_path``) against ``signature_doc`` (a ``manifest.sig``'s bytes)."""
    key = load_trusted_key(trusted_key)
    sig_path = signature_path(manifest_path)
    document = _parse_signature(signature_doc, sig_path)
    if key.verify(DOMAIN + raw, document["signature"]):
        return
    actual = hashlib.sha256(raw).hexdigest()
    if document["manifest_sha256"] != actual:
        raise SignatureError(
            f"{manifest_path} changed after it was signed (SHA-256 {actual[:16]}..., signed "
            f"{str(document['manifest_sha256'])[:16]}...); refusing to trust it"
        )
    if document["key_id"] != key.key_id:
        raise SignatureError(
            f"{manifest_path} is signed by another key (key id {str(document['key_id'])[:16]}), not by the "
            f"trusted key {key.source} (key id {key.key_id}); refusing to trust it"
        )
    raise SignatureError(f"{sig_path} does not verify with the trusted key {key.source} (key id {key.key_id}): "
                         f"the signature was altered; refusing to trust {manifest_path}")


def _parse_signature(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"signature {path} is not valid JSON ({exc}); refusing to trust the manifest") from exc
    if not isinstance(document, dict):
        raise SignatureError(f"signature {path} must be a JSON object, got {type(document).__name__}")
    if document.get("algorithm") != ALGORITHM or document.get("version") != VERSION:
        raise SignatureError(f"signature {path}: algorithm {document.get('algorithm')!r} version "
                             f"{document.get('version')!r}, expected {ALGORITHM!r} version {VERSION}")
    text = document.get("signature")
    try:
        signature = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except binascii.Error:
        signature = b""
    if len(signature) != 64:
        raise SignatureError(f"signature {path}: 'signature' must be 64 bytes of base64 (Ed25519); "
                             f"the file is damaged")
    return {"signature": signature, "manifest_sha256": document.get("manifest_sha256"),
            "key_id": document.get("key_id")}


def _read_small(path: Path, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError as exc:
        raise SignatureError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise SignatureError(f"cannot read {what} {path}: {exc}") from exc
    if len(data) > limit:
        raise SignatureError(f"{what} {path} is larger than {limit} bytes; not a {what} file")
    return data
