"""The tolerance table: one row per precision, overridden field by field, errors that say what to write.

The table's TOML form (``[tolerances.<precision>]``) is tested with the config, tests/cllnn_edge/test_config.py.
"""

from __future__ import annotations

import pytest

from runtime.errors import ToleranceError
from runtime.checks.tolerances import DEFAULT_TOLERANCES, Tolerance, ToleranceConfig


def test_a_row_changes_only_the_limits_it_names() -> None:
    table = ToleranceConfig.from_dict({"int8": {"min_top1": 0.9}})
    assert table["int8"].min_top1 == 0.9
    assert table["int8"].max_accuracy_drop == DEFAULT_TOLERANCES["int8"].max_accuracy_drop
    assert table["dynamic-int8"] == DEFAULT_TOLERANCES["dynamic-int8"]


def test_the_table_round_trips_through_its_dict() -> None:
    table = ToleranceConfig().with_limits("float16", max_abs=0.02)
    again = ToleranceConfig.from_dict(table.to_dict())
    assert again == table and again["float16"].max_abs == 0.02


def test_the_export_gate_is_a_named_field_of_the_same_row() -> None:
    int8 = ToleranceConfig().with_limits("int8", convert_min_top1=0.5, int8_graph_max_abs=0.1)["int8"]
    assert int8.at_export() == Tolerance(min_top1=0.5, stage_nrmse=int8.stage_nrmse)
    assert int8.of_int8_graph() == Tolerance(max_abs=0.1, stage_nrmse=int8.stage_nrmse)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"quantized_min_top1": 0.99}, r"one table per precision .*\[tolerances\.int8\]"),
        ({"int4": {"min_top1": 0.9}}, r"unknown key 'int4' in \[tolerances\]"),
        ({"int8": {"min_top_1": 0.9}}, r"unknown tolerance\(s\) \['min_top_1'\] for int8"),
        ({"int8": {"min_top1": 1.2}}, r"min_top1 must be >= 0 and <= 1"),
        ({"float32": {"max_abs": -1e-5}}, r"max_abs must be >= 0"),
        ({"float32": {"max_abs": "small"}}, r"max_abs must be a finite number"),
    ],
)
def test_bad_rows_name_what_to_fix(rows: dict, message: str) -> None:
    with pytest.raises(ToleranceError, match=message):
        ToleranceConfig.from_dict(rows)


def test_override_parses_the_cli_form() -> None:
    table = ToleranceConfig().override("dynamic-int8.min_top1=0.97")
    assert table["dynamic-int8"].min_top1 == 0.97 and table["int8"].min_top1 == 0.99
    with pytest.raises(ToleranceError, match="PRECISION.LIMIT=NUMBER"):
        ToleranceConfig().override("min_top1=0.97")


def test_a_tolerance_error_is_a_value_error() -> None:
    """Code that knows only the standard library still catches a bad limit."""
    with pytest.raises(ValueError, match="no tolerances for precision 'int4'"):
        ToleranceConfig()["int4"]
