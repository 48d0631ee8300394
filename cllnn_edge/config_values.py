"""Checks of single configuration values, for the sections of ``cllnn_edge.config``.

Apart from the sections themselves so that ``config.py`` reads as the list of settings and their
meaning. Each check raises ``ConfigError`` naming ``section.field``, what it expects and what came
(TOML gives ints, floats, bools, strings and lists: a bool is not accepted where a number is).
A section says its name in its ``SECTION`` class attribute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cllnn_edge.errors import ConfigError


def require_int(section: object, name: str) -> None:
    value = getattr(section, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{_where(section, name)} must be an integer, got {value!r} ({type(value).__name__})"
        )


def require_positive_int(section: object, name: str) -> None:
    require_int(section, name)
    if getattr(section, name) <= 0:
        raise ConfigError(f"{_where(section, name)} must be > 0, got {getattr(section, name)}")


def require_number(section: object, name: str) -> None:
    value = getattr(section, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{_where(section, name)} must be a finite number, got {value!r}")


def checked_image_shape(value: Any, channels: tuple[int, ...]) -> tuple[int, ...]:
    """``model.image_shape`` checked: (height, width, channels) of positive integers, its channels one
    of ``channels``; a list (from TOML) becomes a tuple."""
    shape = tuple(value) if isinstance(value, list) else value
    if (not isinstance(shape, tuple) or len(shape) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in shape)):
        raise ConfigError(f"model.image_shape must be [height, width, channels] of positive integers, got {shape!r}")
    if shape[2] not in channels:
        raise ConfigError(f"model.image_shape: images must have 1 (grey) or 3 (RGB) channels, got {shape[2]}")
    return shape


def calibration_table(name: str, table: Any) -> dict[str, Any]:
    """One ``[export.calibration.<format>]`` table: a method name and / or a positive image count."""
    where = f"[export.calibration.{name}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table (method, images), got {table!r}")
    unknown = sorted(set(table) - {"method", "images"})
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {unknown}; known: ['images', 'method']")
    if "method" in table and not isinstance(table["method"], str):
        raise ConfigError(f"{where} method must be a name, got {table['method']!r}")
    images = table.get("images", 1)
    if isinstance(images, bool) or not isinstance(images, int) or images <= 0:
        raise ConfigError(f"{where} images must be a positive integer, got {images!r}")
    return dict(table)


def gib(size: int) -> str:
    """A byte count in GiB, for messages."""
    return f"{size / 1024**3:,.2f} GiB"


def _where(section: object, name: str) -> str:
    return f"{type(section).SECTION}.{name}"  # type: ignore[attr-defined]
