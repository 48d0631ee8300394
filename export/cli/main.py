"""The ``cllnn-export`` command line: one subcommand per job, each returning an exit code.

Exit codes: 0 success, 1 a check failed (or the run did), 2 usage or input error, 130 interrupted
(``export.errors.exit_code_of`` maps an error to its code). A command runs in three steps: parse the
arguments (``export.cli.args``), resolve them into one checked plan (``export.pipeline.plan``: a bad
input fails here, before any work, creating nothing), then hand the plan to the command
(``export.cli.commands``). Heavy libraries load only in the third step, so ``--help`` is instant.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

from export.cli.args import build_parser
from export.errors import EXIT_CHECK_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, TOOLKIT_ERRORS, exit_code_of
from export.cli.sign import COMMANDS as SIGNING_COMMANDS

__all__ = ["EXIT_CHECK_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

# The module of the commands that work (they load TensorFlow): imported once a plan is made.
COMMANDS_MODULE = "export.cli.commands"
# What TensorFlow's C++ side prints at import whatever TF_CPP_MIN_LOG_LEVEL says (the oneDNN notice is
# logged before absl's logging is initialised, so no level reaches it): hidden unless --verbose.
TF_IMPORT_BANNERS = (b"oneDNN custom operations are on", b"All log messages before absl::InitializeLog()")


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


def load_commands(*, quiet: bool) -> ModuleType:
    """The commands module (``COMMANDS_MODULE``); ``quiet``: TensorFlow's start-up banners, printed
    when that import loads it, filtered out."""
    if COMMANDS_MODULE in sys.modules or not quiet:
        return importlib.import_module(COMMANDS_MODULE)
    with _without_tf_banners():
        return importlib.import_module(COMMANDS_MODULE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for what reproduces a result
    if args.command in SIGNING_COMMANDS:  # no plan, no TensorFlow: they handle their own errors (exit 2)
        return int(args.handler(args))
    if not args.verbose:
        quiet_tensorflow()
    try:
        if callable(args.handler):  # target: no plan, no TensorFlow (export.cli.target)
            return int(args.handler(args))
        plan = args.plan(args)  # everything checked before any work
        handler: Callable[..., int] = getattr(load_commands(quiet=not args.verbose), args.handler)
        return int(handler(plan, args))
    except TOOLKIT_ERRORS as exc:
        code = exit_code_of(exc)
        # 1: the run failed, not its input (a stage, an equivalence proof, a cluster peer); 2: a bad config,
        # data source, model, --tolerance, output path, or artefacts a manifest lists that are malformed,
        # outside the directory, unsigned or refused by the runtime.
        word = "FAILED" if code == EXIT_CHECK_FAILED else "error"
        print(f"cllnn-export {args.command}: {word}: {exc}", file=sys.stderr)
        return EXIT_USAGE if code is None else code
    except KeyboardInterrupt:
        print(f"cllnn-export {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
