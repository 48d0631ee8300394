"""Errors of the export side, and the one rule that turns any error of the toolkit into an exit code.

All are ``CllnnError``. ``exit_code_of`` is the rule ``cllnn-export`` (and a ``run`` stage deciding
whether to keep or wrap an error) applies: a run that failed is exit 1, every other error of the
toolkit (``cllnn_edge``'s, export's, ``runtime``'s) is bad input for the caller to fix, exit 2.
"""

from __future__ import annotations

from cllnn_edge.errors import CllnnError, ClusterError
from runtime.errors import EdgeRuntimeError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # a check failed, or the run did (RUN_FAILURES)
EXIT_USAGE = 2  # usage or input error
EXIT_INTERRUPTED = 130


class ExportError(CllnnError, ValueError):
    """The model cannot be exported as asked (not a CLLNN, bad format name, unwritable path)."""


class EquivalenceError(CllnnError):
    """An unrolled or converted model does not compute what the trained model computes."""


class ConversionError(CllnnError):
    """A converter failed or crashed for one format; the other formats still export."""


class TargetError(CllnnError, ValueError):
    """A target device cannot be used as asked: a bad TARGET, an unreachable host, a refused login, an
    unknown host key, no usable Python there (the message names the target and what to do)."""


class StageError(CllnnError):
    """A stage of ``cllnn-export run`` failed; earlier stages' results are kept."""


# The run failed, not its input: the same command may pass once the cause (a converter, a peer) is gone.
RUN_FAILURES: tuple[type[CllnnError], ...] = (StageError, EquivalenceError, ConversionError, ClusterError)
# Every error the toolkit raises on purpose; those not in RUN_FAILURES are the caller's to fix.
TOOLKIT_ERRORS: tuple[type[Exception], ...] = (CllnnError, EdgeRuntimeError)


def exit_code_of(exc: BaseException) -> int | None:
    """``EXIT_CHECK_FAILED`` for a failed run, ``EXIT_USAGE`` for bad input (a config value, a data
    source, a model file, a manifest, an output path, a tolerance), None for what the toolkit does not
    raise on purpose (a bug: its traceback should show)."""
    if isinstance(exc, RUN_FAILURES):
        return EXIT_CHECK_FAILED
    if isinstance(exc, TOOLKIT_ERRORS):
        return EXIT_USAGE
    return None
