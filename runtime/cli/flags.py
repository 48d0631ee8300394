"""Command-line flags the device's commands share, defined once: the timing settings of
``cllnn-bench`` and ``cllnn-bench select``, the ``--tolerance`` override of ``verify`` and
``select``, the ``--trusted-key`` of all three, the ``--tflite-backend`` of all three and the ``--formats``
of ``verify`` and ``select``.
Standard library only.

``cllnn-export parity`` spells its ``--tolerance`` / ``--trusted-key`` itself: importing
anything of ``runtime`` loads the package (numpy, ~0.1 s), which ``cllnn-export --help`` avoids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.artifacts.manifest import format_names

ArgumentTarget = Any  # an argparse parser or argument group: anything with add_argument


def add_timing_flags(target: ArgumentTarget) -> None:
    """``--batch``, ``--threads``, ``--warmup``, ``--runs``: ``runtime.bench.latency.BenchSettings``."""
    target.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    target.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    target.add_argument("--warmup", type=int, default=20, help="untimed calls first (default 20)")
    target.add_argument("--runs", type=int, default=200, help="timed calls (default 200)")


def add_tolerance_flag(target: ArgumentTarget, table: str) -> None:
    """``--tolerance PRECISION.LIMIT=VALUE``, repeatable: ``runtime.checks.tolerances.ToleranceConfig.override``.
    ``table`` says which table it overrides, e.g. "the exported tolerance table"."""
    target.add_argument("--tolerance", action="append", default=[], metavar="PRECISION.LIMIT=VALUE",
                        help=f"override one limit of {table}, e.g. int8.min_top1=0.98 (repeatable)")


def add_trusted_key_flag(target: ArgumentTarget, note: str = "") -> None:
    """``--trusted-key PUBKEY``: ``runtime.artifacts.signing``; ``note`` adds what the key means to this command."""
    target.add_argument("--trusted-key", type=Path, metavar="PUBKEY",
                        help="require manifest.json to be signed with this public key (cllnn-export keygen / "
                        "sign); a missing or wrong signature, or a file changed after signing: exit 2"
                        + (f". {note}" if note else ""))


def add_tflite_backend_flag(target: ArgumentTarget) -> None:
    """``--tflite-backend``: which package's Interpreter runs LiteRT's ``.tflite`` files."""
    target.add_argument("--tflite-backend", choices=("ai-edge-litert", "tflite-runtime"), default=None,
                        help="run .tflite files on this package's Interpreter (default: ai-edge-litert where "
                        "installed, else tflite-runtime); a file the installed release cannot load is "
                        "skipped with the op and version named")


def add_formats_flag(target: ArgumentTarget, verb: str) -> None:
    """``--formats LIST``: only these formats' files (``runtime.artifacts.manifest.Manifest.entries_of``);
    parsed by ``format_names``, checked against the manifest when it is read (an unknown name: exit 2)."""
    target.add_argument("--formats", type=format_names, default=None, metavar="LIST",
                        help=f"{verb} only the files of these formats, comma-separated as the manifest's entries "
                        "name them (e.g. tflite-int8,tflite-dynamic,tflite-fp32; default: every listed file); "
                        "a name the manifest does not hold: exit 2, naming those it holds")
