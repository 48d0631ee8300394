"""``cllnn-export target bundle RUN_DIR --platform P --python X.Y --out DIR``: the offline bundle
(``export.targets.bundle``), a subcommand of the ``target`` group (``export.cli.args.add_target``).

It runs without a plan and without TensorFlow: ``export.cli.main`` calls a callable handler directly,
inside its error handling (a ``TargetError`` is exit 2, Ctrl-C exit 130); an ``OSError`` (a disk full,
an unwritable ``--out``) is exit 2 here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from export.errors import EXIT_OK, EXIT_USAGE
from export.targets.bundle import make_bundle
from export.targets.install import BUNDLE_JSON, INSTALLER
from export.targets.wheels import PLATFORMS, cache_root, parse_platform, parse_python


def add_bundle(targets: Any) -> None:
    """``target bundle`` (``targets``: the ``target`` group's subparsers)."""
    bundle = targets.add_parser(
        "bundle",
        help="write an offline bundle of a run for a device: wheels, artefacts, installer, hashes",
        description=(
            "Write DIR: the device install (cllnn-edge's wheel and its runtime dependencies as wheels for "
            "the device's platform and Python, pinned to the versions the run's files were verified with), "
            "the run's artefacts (files, manifest, signature, check set, probes), the installer "
            f"({INSTALLER}) and {BUNDLE_JSON} (every file's SHA-256 and size). Wheels are downloaded once "
            f"and cached in $XDG_CACHE_HOME/cllnn-edge/wheels; a second bundle downloads nothing. On the "
            f"device: python3 DIR/{INSTALLER} (no network: pip install --no-index), then cllnn-bench verify "
            "DIR/artifacts. Exit 0: written; 2: bad input, no wheel for that platform, no network."
        ),
    )
    bundle.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a run directory (its artifacts/) or an artefacts directory (its manifest.json)")
    bundle.add_argument("--platform", required=True, metavar="PLATFORM",
                        help=f"the device's OS and CPU: {', '.join(PLATFORMS)} (armv7l, a 32-bit OS, has no "
                        "LiteRT wheels: install a 64-bit OS)")
    bundle.add_argument("--python", required=True, metavar="X.Y", help="the device's Python, e.g. 3.11 (>= 3.10)")
    bundle.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="the bundle directory (new, empty, or a bundle made before: replaced whole)")
    bundle.add_argument("--pin", action="append", default=[], metavar="NAME==VERSION",
                        help="install this version on the device instead of the one the run's files were verified "
                        "with, or add a package (e.g. onnxruntime==1.24.1; repeatable)")
    bundle.set_defaults(handler=run_bundle)


def run_bundle(args: argparse.Namespace) -> int:
    try:
        result = make_bundle(args.run_dir, parse_platform(args.platform), parse_python(args.python), args.out,
                             pins=args.pin, progress=lambda line: print(line, flush=True))
    except OSError as exc:
        print(f"cllnn-export target bundle: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for name, pin in result.pins.items():
        print(f"  {name} {pin}")
    print(f"wrote {result.directory}: {result.files} files, {result.bytes / 2**20:.1f} MiB, {result.seconds:.1f} s; "
          f"{result.downloaded} wheels downloaded (cache: {cache_root()})")
    print(f"on the device: python3 {result.directory.name}/{INSTALLER}, then the cllnn-bench it prints: "
          f"verify {result.directory.name}/artifacts")
    return EXIT_OK
