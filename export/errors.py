"""Errors of the export side; all are ``CllnnError`` so the CLI maps them to exit 2."""

from __future__ import annotations

from cllnn_edge.errors import CllnnError


class ExportError(CllnnError, ValueError):
    """The model cannot be exported as asked (not a CLLNN, bad format name, unwritable path)."""


class EquivalenceError(CllnnError):
    """An unrolled or converted model does not compute what the trained model computes."""


class ConversionError(CllnnError):
    """A converter failed or crashed for one format; the other formats still export."""
