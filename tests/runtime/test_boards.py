"""Microcontroller budgets (``runtime.deploy.boards``): named boards, figures given, and the fit verdict."""

from __future__ import annotations

import pytest

from runtime.deploy.boards import BOARDS, KIB, budget_for
from runtime.errors import BudgetError
from runtime.artifacts.manifest import McuRecord

SEED_INT8 = McuRecord(flash_bytes=913_616, arena_min_bytes=140_000, arena_bytes=154_000)  # the demo's file


def test_a_named_board_gives_its_published_flash_and_ram_and_flags_replace_them() -> None:
    budget = budget_for("nano33-ble")
    assert budget is not None and (budget.flash_bytes, budget.ram_bytes) == (1024 * KIB, 256 * KIB)
    assert budget.label == "nano33-ble (1,024 KiB flash, 256 KiB RAM)"
    reserved = budget_for("nano33-ble", flash_kib=768)
    assert reserved is not None and (reserved.flash_bytes, reserved.ram_bytes) == (768 * KIB, 256 * KIB)
    alone = budget_for(ram_kib=128)
    assert alone is not None and (alone.flash_bytes, alone.ram_bytes, alone.label) == (None, 128 * KIB, "128 KiB RAM")
    assert budget_for() is None
    assert {b.name for b in BOARDS.values()} == set(BOARDS)


@pytest.mark.parametrize(("args", "message"), [
    ({"board": "uno"}, "unknown board 'uno'; choose from nano33-ble, stm32h743, stm32f746, nrf52832"),
    ({"flash_kib": 0}, "flash_kib must be a positive whole number of KiB, got 0"),
    ({"ram_kib": 1.5}, "ram_kib must be a positive whole number of KiB, got 1.5"),
    ({"ram_kib": True}, "ram_kib must be a positive whole number of KiB, got True"),
])
def test_a_bad_budget_names_what_is_wrong(args: dict, message: str) -> None:
    with pytest.raises(BudgetError, match=message):
        budget_for(**args)


def test_the_verdict_counts_the_flash_image_and_the_arena_to_allocate() -> None:
    fits = budget_for("stm32h743").check(SEED_INT8)
    assert fits.passed and fits.expected == "fits stm32h743 (2,048 KiB flash, 1,024 KiB RAM)"
    assert fits.value["flash_left_bytes"] == 2048 * KIB - 913_616
    assert fits.value["ram_left_bytes"] == 1024 * KIB - 154_000
    tight = budget_for(flash_kib=892, ram_kib=150)  # 913,616 bytes > 892 KiB; 154,000 > 150 KiB, though 140,000 fits
    verdict = tight.check(SEED_INT8)
    assert not verdict.passed
    assert verdict.value["over"] == ["flash 892.2 KiB > 892 KiB", "arena 150.4 KiB > 150 KiB of RAM"]
