"""``cllnn-export keygen`` and ``cllnn-export sign``: the build host's half of signed artefacts.

``keygen --out DIR`` writes a new Ed25519 key pair (``cllnn-signing.key``,
mode 0600, stays on the build host; ``cllnn-signing.pub``, goes to devices).
``sign ARTIFACTS --key KEY`` checks every file the manifest lists against its
SHA-256 and writes ``ARTIFACTS/manifest.sig`` over the manifest's exact bytes.
Both are ``runtime.artifacts.signing`` (the device checks with the same module and the
public key, without TensorFlow); nothing here needs TensorFlow either.
Exit 0: written; 2: usage or input error (no manifest, a file already
changed, an existing key, a public key given to sign, no ``cryptography``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from export.errors import EXIT_OK, EXIT_USAGE
from runtime.artifacts.signing import generate_keys, sign_artifacts

COMMANDS = ("keygen", "sign")  # cllnn-export runs them without a plan and without loading TensorFlow


def add_commands(commands: Any) -> None:
    """Add ``keygen`` and ``sign`` to ``cllnn-export``'s subcommands (an argparse subparsers object)."""
    keygen = commands.add_parser(
        "keygen",
        help="make an Ed25519 key pair for signing artefacts",
        description="Write DIR/cllnn-signing.key (private, mode 0600: keep it on the build host) and "
        "DIR/cllnn-signing.pub (public: install it on devices and pass it as --trusted-key). "
        "An existing key is never replaced. Exit 0: written; 2: usage error.",
    )
    keygen.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for the two key files")
    keygen.set_defaults(handler=run_keygen)

    sign = commands.add_parser(
        "sign",
        help="sign an artefacts directory (its manifest.json) with a private key",
        description="Check every file ARTIFACTS/manifest.json lists (models, stage probes, check set) "
        "against its SHA-256, then write ARTIFACTS/manifest.sig: an Ed25519 signature over the "
        "manifest's bytes, which hold every file's SHA-256 and size. Devices check it with the public "
        "key: runtime.load(..., trusted_key=...), cllnn-bench --trusted-key, cllnn-bench verify / "
        "select --trusted-key, cllnn-export parity --trusted-key. Exit 0: signed; 2: usage or input error.",
    )
    sign.add_argument("artifacts", type=Path, metavar="ARTIFACTS",
                      help="directory written by 'cllnn-export convert' (or run's artifacts/)")
    sign.add_argument("--key", required=True, type=Path, metavar="KEY",
                      help="the private key, cllnn-signing.key from 'cllnn-export keygen'")
    sign.set_defaults(handler=run_sign)


def run_keygen(args: argparse.Namespace) -> int:
    try:
        pair = generate_keys(args.out)
    except (ValueError, OSError) as exc:  # SignatureError is a ValueError
        print(f"cllnn-export keygen: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"private key: {pair.private} (mode 0600; keep it on the build host, never on a device)")
    print(f"public key:  {pair.public} (install on devices; pass as --trusted-key)")
    print(f"key id:      {pair.key_id}")
    return EXIT_OK


def run_sign(args: argparse.Namespace) -> int:
    try:
        signed = sign_artifacts(args.artifacts, args.key)
    except (ValueError, OSError) as exc:  # ManifestError, SignatureError: both ValueError
        print(f"cllnn-export sign: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"signed {signed.manifest} (SHA-256 {signed.manifest_sha256[:16]}...) with key id {signed.key_id}: "
          f"{signed.signature}")
    return EXIT_OK
