"""``cllnn-export target ...``: the commands that drive a device (issue 26), without a plan and without
TensorFlow (``export.cli.main`` runs a callable handler directly, inside its error handling: a
``TargetError`` is exit 2, Ctrl-C exit 130, and the remote command is ended with the local one).

``target probe TARGET [--json FILE]``: what the device has (``export.targets.probe``), as lines and,
with ``--json``, as the JSON object ``DeviceFacts.to_dict`` gives. Exit 0: probed and its Python is
new enough; 2: the target cannot be used (unreachable, refused, no Python >= 3.10 there, a bad answer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from export.errors import EXIT_OK, EXIT_USAGE, TargetError
from export.targets.connect import open_device
from export.targets.probe import probe
from export.targets.spec import USAGE, parse_target
from runtime.atomic import write_json_atomic
from runtime.outputs import check_output_file


def add_probe(targets: Any) -> None:
    """``target probe`` (``targets``: the ``target`` group's subparsers)."""
    command = targets.add_parser(
        "probe",
        help="what a device has: CPU and its class, Python, glibc, free disk, installed runtimes",
        description=(
            "Send runtime/probe.py (standard library only) and runtime/machine.py to the device's working "
            "directory, run it with the device's python3 and print what it found: architecture, CPU model "
            f"and class, Python, glibc, free disk, the runtimes installed and their versions. {USAGE}. "
            "Exit 0: probed; 2: the target cannot be used (unreachable, refused, no Python >= 3.10, a "
            "malformed answer), with what to do."
        ),
    )
    command.add_argument("target", metavar="TARGET", help="local, ssh://[user@]host[:port] or emulated:CPU")
    command.add_argument("--json", type=Path, metavar="FILE", help="also write the facts as JSON")
    command.set_defaults(handler=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    spec = parse_target(args.target)
    if args.json is not None:
        check_output_file(args.json, "--json")
    facts = probe(open_device(spec), require_python=False)
    print("\n".join(facts.lines()))
    if args.json is not None:
        write_json_atomic(args.json, facts.to_dict())
    try:
        facts.check_python()
    except TargetError as exc:
        print(f"cllnn-export target probe: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
