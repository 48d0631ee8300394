"""The toolkit's exceptions: one base class, a few specific kinds.

Each subclasses ``ValueError`` as well, so callers that only know the standard
library still catch bad input; the CLI maps them to exit code 2.
"""

from __future__ import annotations


class CllnnError(Exception):
    """Base class of every error this toolkit raises on purpose."""


class ConfigError(CllnnError, ValueError):
    """A configuration value or file is invalid; the message names the field."""


class DataError(CllnnError, ValueError):
    """A data source is missing, unreadable or not MNIST-shaped."""


class ModelError(CllnnError, ValueError):
    """A file or object is not a CLLNN model this toolkit built."""


class ClusterError(CllnnError):
    """Distributed training failed because of the cluster (a worker died or stopped answering);
    the message names the worker. Not a ValueError: the input was fine, the run was not."""
