"""The tolerance table: one row per precision, overridden field by field, errors that say what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from cllnn_edge.config import Config
from cllnn_edge.errors import ConfigError
from cllnn_edge.tolerances import DEFAULT_TOLERANCES, Tolerance, ToleranceConfig


def test_a_toml_row_changes_only_the_limits_it_names(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text("[tolerances.int8]\nmin_top1 = 0.9\n")
    table = Config.from_toml(path).tolerances
    assert table["int8"].min_top1 == 0.9
    assert table["int8"].max_accuracy_drop == DEFAULT_TOLERANCES["int8"].max_accuracy_drop
    assert table["dynamic-int8"] == DEFAULT_TOLERANCES["dynamic-int8"]


def test_the_table_round_trips_through_the_config_dict() -> None:
    table = ToleranceConfig().with_limits("float16", max_abs=0.02)
    again = Config.from_dict(Config().replace("tolerances", rows=table.rows).to_dict()).tolerances
    assert again == table and again["float16"].max_abs == 0.02


def test_the_export_gate_is_a_named_field_of_the_same_row() -> None:
    int8 = ToleranceConfig().with_limits("int8", convert_min_top1=0.5, bounded_graph_max_abs=0.1)["int8"]
    assert int8.at_export() == Tolerance(min_top1=0.5, stage_nrmse=int8.stage_nrmse)
    assert int8.of_bounded_graph() == Tolerance(max_abs=0.1, stage_nrmse=int8.stage_nrmse)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tolerances]\nquantized_min_top1 = 0.99\n", r"one table per precision .*\[tolerances\.int8\]"),
        ("[tolerances.int4]\nmin_top1 = 0.9\n", r"unknown key 'int4' in \[tolerances\]"),
        ("[tolerances.int8]\nmin_top_1 = 0.9\n", r"unknown tolerance\(s\) \['min_top_1'\] for int8"),
        ("[tolerances.int8]\nmin_top1 = 1.2\n", r"min_top1 must be >= 0 and <= 1"),
        ("[tolerances.float32]\nmax_abs = -1e-5\n", r"max_abs must be >= 0"),
        ("[tolerances.float32]\nmax_abs = 'small'\n", r"max_abs must be a finite number"),
    ],
)
def test_bad_rows_name_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.from_toml(path)


def test_override_parses_the_cli_form() -> None:
    table = ToleranceConfig().override("dynamic-int8.min_top1=0.97")
    assert table["dynamic-int8"].min_top1 == 0.97 and table["int8"].min_top1 == 0.99
    with pytest.raises(ConfigError, match="PRECISION.LIMIT=NUMBER"):
        ToleranceConfig().override("min_top1=0.97")
