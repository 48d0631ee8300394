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
from export.targets.remote_run import run_on_target
from export.targets.runtime_pin import EXAMPLES, USE_DEVICE_RUNTIME, RuntimeChoice, RuntimePin
from export.targets.spec import USAGE, parse_named_target, parse_target
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


def add_run(targets: Any) -> None:
    """``target run`` (``targets``: the ``target`` group's subparsers)."""
    command = targets.add_parser(
        "run",
        help="verify, time and choose a run's files on a device, and bring its results back",
        description=(
            "Probe the device, make the offline bundle for its platform and Python (cached), send what it "
            "does not hold, install it there, then run cllnn-bench verify, cllnn-bench and cllnn-bench select "
            "on the device (select not on an emulated one: its timings are not a board's) and place their "
            f"JSON in RUN_DIR/devices/NAME/. {USAGE}. Exit 0: done (the verdicts are in the files); 2: the "
            "target or the run directory cannot be used; 130: interrupted (the device's command ends too)."
        ),
    )
    command.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a 'cllnn-export run' directory")
    command.add_argument("target", metavar="TARGET", help="local, ssh://[user@]host[:port] or emulated:CPU")
    command.add_argument("--name", metavar="NAME", help="devices/NAME (default: from the target, e.g. "
                         "emulated-cortex-a76)")
    runtime = command.add_mutually_exclusive_group()
    runtime.add_argument("--runtime", metavar="NAME==VERSION",
                         help=f"bundle this runtime release and run verify, bench and select with it, as "
                         f"production will ({EXAMPLES}; default: the versions the files were verified with)")
    runtime.add_argument("--use-device-runtime", action="store_true",
                         help="the same with the runtime the probe finds installed on the device "
                         "(tflite-runtime first, then ai-edge-litert, then onnxruntime)")
    command.add_argument("--formats", metavar="LIST",
                         help="verify, time and choose only the files of these formats there, comma-separated as "
                         "the run's manifest names them (e.g. tflite-int8,tflite-dynamic,tflite-fp32; default: "
                         "all); a name it does not hold: exit 2 before the device is contacted. The bundle "
                         "still carries every file, so the manifest and its signature stay whole")
    command.set_defaults(handler=run_target)


def run_target(args: argparse.Namespace) -> int:
    spec = parse_target(args.target)
    name = parse_named_target(f"{args.name}={args.target}")[0] if args.name else spec.default_name
    runtime: RuntimeChoice = USE_DEVICE_RUNTIME if args.use_device_runtime else (
        RuntimePin.parse(args.runtime) if args.runtime else None)
    done = run_on_target(args.run_dir, spec, name, progress=lambda line: print(line, flush=True), runtime=runtime,
                         formats=args.formats)
    chosen = done.selection.chosen.file if done.selection is not None and done.selection.chosen else None
    ran = f"with {done.runtime} ({done.runtime.origin})" if done.runtime else "with the verified versions"
    asked = "" if done.formats is None else f" ({len(done.verify.results) + len(done.verify.skipped)} files of " \
        f"{', '.join(done.formats)})"
    print(f"{done.directory}: verify{asked} {'PASSED' if done.verify else 'FAILED'} {ran}; "
          + (f"chosen there: {chosen}" if chosen else "no choice (emulated)" if done.emulated else "nothing chosen"))
    return EXIT_OK


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
