"""What the deployed file may cost: a ``Budget`` of limits (accuracy drop, top-1 agreement, size, p99,
a microcontroller's flash and RAM), each a ``Limit`` that knows its flag, the figure it bounds and how to
say by how much a file misses it. ``runtime.deploy.choose`` holds candidates to it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from runtime.deploy.boards import KIB, budget_for
from runtime.errors import BudgetError

_SLACK = 1e-9  # a figure computed to equal its limit (e.g. 1/64 of 100 points) is within it


@dataclass(frozen=True)
class Limit:
    """One kind of budget limit: its ``Budget`` field, its flag, and the candidate figure it bounds."""

    field: str  # the Budget attribute
    flag: str
    what: str  # how a reason names the figure
    figure: str  # the Candidate attribute it bounds
    unit: str  # appended to numbers, e.g. " us"
    at_most: bool  # True: figure <= limit; False: figure >= limit

    def admits(self, value: float, limit: float) -> bool:
        return value <= limit + _SLACK if self.at_most else value >= limit - _SLACK

    def margin(self, value: float, limit: float) -> float:
        """How far ``value`` misses ``limit``, relative to the limit (inf for a zero limit)."""
        gap = value - limit if self.at_most else limit - value
        return gap / limit if limit > 0 else math.inf

    def describe(self, value: float, limit: float) -> str:
        """E.g. "p99 412 us > budget 300 us"."""
        if math.isinf(value):
            return "not a microcontroller file (no tensor arena measured)"
        return f"{self.what} {number(value)}{self.unit} {'>' if self.at_most else '<'} budget {limit:g}{self.unit}"


LIMITS = (
    Limit("max_accuracy_drop", "--max-accuracy-drop", "accuracy drop", "accuracy_drop_pp", " points", True),
    Limit("min_agreement", "--min-agreement", "top-1 agreement", "agreement_pct", "%", False),
    Limit("max_size_kib", "--max-size-kib", "size", "size_kib", " KiB", True),
    Limit("max_p99_us", "--max-p99-us", "p99", "p99_us", " us", True),
    # A microcontroller's memory (runtime.deploy.boards): only files with a measured arena (tflm) qualify.
    Limit("max_flash_kib", "--flash-kib", "flash", "flash_kib", " KiB", True),
    Limit("max_ram_kib", "--ram-kib", "tensor arena", "arena_kib", " KiB", True),
)


@dataclass(frozen=True)
class Budget:
    """What the deployed file may cost; None: not limited (verification still applies).

    ``max_accuracy_drop``: percentage points of accuracy on the check set
    below the trained model's; ``min_agreement``: percent of check images
    whose top-1 class matches the trained model's; ``max_size_kib``: file
    size; ``max_p99_us``: 99th-percentile latency of one call at the set batch;
    ``max_flash_kib`` / ``max_ram_kib``: a microcontroller's flash and RAM (a
    board's, ``for_board``), which only a file with a measured tensor arena
    (``details.mcu``, format tflm-int8) can be held to.
    """

    max_accuracy_drop: float | None = None
    min_agreement: float | None = None
    max_size_kib: float | None = None
    max_p99_us: float | None = None
    max_flash_kib: float | None = None
    max_ram_kib: float | None = None

    def __post_init__(self) -> None:
        for limit in LIMITS:
            value = getattr(self, limit.field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BudgetError(f"{limit.flag} must be a finite number, got {value!r}")
            if value < 0:
                raise BudgetError(f"{limit.flag} must be >= 0, got {value:g}")
        if self.min_agreement is not None and self.min_agreement > 100:
            raise BudgetError(f"--min-agreement is a percentage (0 to 100), got {self.min_agreement:g}")

    @classmethod
    def for_board(cls, board: str | None, **limits: float | None) -> Budget:
        """``limits`` (the fields above; None: not set), a named board's flash and RAM where its
        ``max_flash_kib`` / ``max_ram_kib`` are not set (``runtime.deploy.boards.BOARDS``)."""
        memory = budget_for(board) if board else None
        if memory is not None:
            for name, figure in (("max_flash_kib", memory.flash_bytes), ("max_ram_kib", memory.ram_bytes)):
                if limits.get(name) is None and figure is not None:
                    limits[name] = figure / KIB
        return cls(**limits)

    def limits(self) -> list[tuple[Limit, float]]:
        """The limits that are set, with their values."""
        return [(limit, getattr(self, limit.field)) for limit in LIMITS if getattr(self, limit.field) is not None]

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def number(value: float) -> str:
    """Figures in reasons: whole numbers from 100 up, three significant digits below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
