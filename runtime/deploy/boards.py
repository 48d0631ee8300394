"""Microcontroller memory budgets: named boards with their published flash and RAM, or figures given.

A file fits a budget when its flash image (the model's bytes, which a board
keeps in flash as a C array) and the tensor arena it needs (``McuRecord``:
the measured minimum plus the margin, as the header allocates it) fit the
board's flash and RAM. Nothing else is counted: the application, TFLM's own
code (tens of KiB with the kernels this model uses) and the stack share the
same memory, so a budget leaves them what is left; give ``--flash-kib`` /
``--ram-kib`` below the board's figures to reserve room explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import BudgetError
from runtime.artifacts.manifest import CheckRecord, McuRecord

KIB = 1024


@dataclass(frozen=True)
class Board:
    """A board with its microcontroller's published on-chip memory."""

    name: str  # as the CLI spells it
    description: str
    flash_kib: int
    ram_kib: int


# Published datasheet figures of the microcontroller on each board.
BOARDS: dict[str, Board] = {
    board.name: board
    for board in (
        Board("nano33-ble", "Arduino Nano 33 BLE Sense: nRF52840, Cortex-M4F 64 MHz", flash_kib=1024, ram_kib=256),
        Board("stm32h743", "STM32H743 (e.g. NUCLEO-H743ZI2): Cortex-M7 480 MHz",
              flash_kib=2048, ram_kib=1024),
        Board("stm32f746", "STM32F746G-DISCO: Cortex-M7 216 MHz", flash_kib=1024, ram_kib=320),
        Board("nrf52832", "nRF52832 boards: Cortex-M4F 64 MHz", flash_kib=512, ram_kib=64),
    )
}


@dataclass(frozen=True)
class MemoryBudget:
    """The flash and RAM a model may use; None = not limited."""

    label: str  # "nano33-ble (1024 KiB flash, 256 KiB RAM)", or the figures given
    flash_bytes: int | None
    ram_bytes: int | None

    def check(self, mcu: McuRecord) -> CheckRecord:
        """Whether the file's flash image and arena fit, as a manifest check record."""
        over = []
        if self.flash_bytes is not None and mcu.flash_bytes > self.flash_bytes:
            over.append(f"flash {mcu.flash_bytes / KIB:,.1f} KiB > {self.flash_bytes / KIB:,.0f} KiB")
        if self.ram_bytes is not None and mcu.arena_bytes > self.ram_bytes:
            over.append(f"arena {mcu.arena_bytes / KIB:,.1f} KiB > {self.ram_bytes / KIB:,.0f} KiB of RAM")
        value = {"flash_bytes": mcu.flash_bytes, "arena_bytes": mcu.arena_bytes,
                 "flash_left_bytes": None if self.flash_bytes is None else self.flash_bytes - mcu.flash_bytes,
                 "ram_left_bytes": None if self.ram_bytes is None else self.ram_bytes - mcu.arena_bytes,
                 "over": over}
        return CheckRecord(passed=not over, value=value, expected=f"fits {self.label}")


def budget_for(board: str | None = None, flash_kib: int | None = None, ram_kib: int | None = None
               ) -> MemoryBudget | None:
    """The budget of a named board, its figures replaced by ``flash_kib`` / ``ram_kib`` where
    given; or those figures alone; None when nothing is given."""
    for name, value in (("flash_kib", flash_kib), ("ram_kib", ram_kib)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise BudgetError(f"{name} must be a positive whole number of KiB, got {value!r}")
    if board:
        known = BOARDS.get(board)
        if known is None:
            raise BudgetError(f"unknown board {board!r}; choose from {', '.join(BOARDS)} "
                              f"(or give --flash-kib / --ram-kib)")
        flash_kib = known.flash_kib if flash_kib is None else flash_kib
        ram_kib = known.ram_kib if ram_kib is None else ram_kib
    elif flash_kib is None and ram_kib is None:
        return None
    figures = ", ".join(f"{value:,} KiB {what}" for value, what in ((flash_kib, "flash"), (ram_kib, "RAM"))
                        if value is not None)
    return MemoryBudget(label=f"{board} ({figures})" if board else figures,
                        flash_bytes=None if flash_kib is None else flash_kib * KIB,
                        ram_bytes=None if ram_kib is None else ram_kib * KIB)


def boards_help() -> str:
    """The named boards for ``--help``."""
    return "; ".join(f"{b.name} ({b.flash_kib:,} KiB flash / {b.ram_kib:,} KiB RAM)" for b in BOARDS.values())
