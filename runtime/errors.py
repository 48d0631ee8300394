"""Errors of the device runtime: one base class, a few specific kinds.

``runtime`` is the bottom layer and may not import ``cllnn_edge``, so it has its
own base class. The kinds a caller can cause (a bad file, bad input) are also
``ValueError``, so code that knows only the standard library still catches them.
"""

from __future__ import annotations


class EdgeRuntimeError(Exception):
    """Base class of every error the runtime raises on purpose."""


class ModelLoadError(EdgeRuntimeError, ValueError):
    """A file is not a model this runtime can load safely (wrong format, corrupt, unsupported)."""


class RuntimeRefusedError(ModelLoadError):
    """The installed runtime refused a file whose bytes passed every check: an op version or kernel type it
    does not have (``runtime.artifacts.compat`` says which release does). ``verify`` and ``select`` skip
    such a file and say why; a corrupt or unsigned file is never this."""


class ManifestError(EdgeRuntimeError, ValueError):
    """A manifest is missing, unreadable or malformed, names a file it may not, or does not vouch for a file.

    Also importable as ``runtime.artifacts.manifest.ManifestError`` and ``runtime.ManifestError``.
    """


class InputError(EdgeRuntimeError, ValueError):
    """Images passed to ``predict`` have the wrong type, shape, dtype or values."""


class ModelClosedError(EdgeRuntimeError, ValueError):
    """A model was used after ``close()`` (like I/O on a closed file)."""


class InferenceError(EdgeRuntimeError, RuntimeError):
    """The backend failed while running a model that loaded fine."""


class ToleranceError(EdgeRuntimeError, ValueError):
    """A tolerance table, row or limit is invalid; the message says what to write."""


class CheckSetError(EdgeRuntimeError, ValueError):
    """The check set beside the artefacts is missing, altered or malformed (the message says which)."""


class SignatureError(ModelLoadError):
    """Artefacts given a trusted key are not signed by it: no signature, a file or the manifest
    changed after signing, another key, or no library to check with (the message says which)."""


class BudgetError(EdgeRuntimeError, ValueError):
    """A budget limit is negative, not a number or out of range, or a board is unknown (the message
    says which)."""
