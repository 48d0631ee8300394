"""The cllnn-export command line: help, exit codes, clear errors."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from export.cli.main import EXIT_USAGE, main


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "train" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "cllnn-export"
    result = subprocess.run([str(script), "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--data SOURCE" in result.stdout and "--config FILE" in result.stdout


def test_missing_out_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == EXIT_USAGE
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("[model]\nleak_rate = 1.5\n", "model.leak_rate must be in (0, 1]"),
        ("[model]\nsequence_length = 7\n", "model.sequence_length must divide"),
        ("[trian]\nepochs = 1\n", "unknown configuration section(s) ['trian']"),
    ],
)
def test_bad_config_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config_text: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(config_text)
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run")])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_data_source_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", str(tmp_path / "nowhere.npz"), "--out", str(tmp_path / "o")])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "nowhere.npz" in err and "Traceback" not in err


def test_bad_epochs_override_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "0", "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert "train.epochs must be > 0" in capsys.readouterr().err


def test_module_entry_point_matches_the_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "export", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert result.returncode == 0 and "cllnn-export" in result.stdout


def _convert(tmp_path: Path, model: Path, *extra: str) -> int:
    return main(["convert", str(model), "--out", str(tmp_path / "artifacts"), *extra])


def test_convert_refuses_a_file_that_is_not_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "model.keras"
    bogus.write_bytes(b"not a zip at all")
    assert _convert(tmp_path, bogus) == EXIT_USAGE
    assert "is not a Keras model file" in capsys.readouterr().err
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_convert_refuses_a_keras_model_that_is_not_a_cllnn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    inputs = keras.Input((28, 28, 1))
    other = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    other.save(tmp_path / "other.keras")
    assert _convert(tmp_path, tmp_path / "other.keras") == EXIT_USAGE
    assert "not a CLLNN model" in capsys.readouterr().err


def test_convert_refuses_an_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _convert(tmp_path, tmp_path / "model.keras", "--formats", "tflite-int8,coreml")
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown format(s) ['coreml']" in err and "tflite-fp32" in err
    assert not (tmp_path / "artifacts").exists()


def test_convert_refuses_an_unwritable_output_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    code = main(["convert", str(tmp_path / "model.keras"), "--out", str(blocker / "artifacts")])
    assert code == EXIT_USAGE
    assert "cannot be written" in capsys.readouterr().err


def test_convert_reports_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _convert(tmp_path, tmp_path / "absent.keras") == EXIT_USAGE
    assert "model file not found" in capsys.readouterr().err


def test_a_bad_tolerance_override_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table lives in runtime and raises its own error; the CLI still calls it a usage error."""
    code = main(["parity", str(tmp_path / "model.keras"), str(tmp_path), "--tolerance", "int8.min_top1=1.5"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "min_top1 must be >= 0 and <= 1" in err and "Traceback" not in err


# -- checked before the work: nothing trained, converted or created when an input or output is wrong ----------
@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a subcommand starts its work: these errors must come first."""
    import cllnn_edge.sources
    import export.cli.commands
    import export.pipeline.run

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before its inputs and outputs were checked")

    monkeypatch.setattr(cllnn_edge.sources, "splits_for", refuse)
    monkeypatch.setattr(cllnn_edge.sources, "data_for", refuse)
    monkeypatch.setattr(export.pipeline.run, "data_for", refuse)
    monkeypatch.setattr(export.pipeline.run, "run_pipeline", refuse)
    for name in ("data_for", "splits_for", "train", "write_shards", "convert", "run_parity", "sweep", "run_pipeline"):
        monkeypatch.setattr(export.cli.commands, name, refuse)  # what each command calls first


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--out", "{root}/FILE"], "--out {root}/FILE cannot be written: it is a file, not a directory"),
        (["run", "--out", "{root}/FILE/sub"], "--out {root}/FILE/sub cannot be written: {root}/FILE is a file"),
        (["run", "--out", "/proc/cllnn-run"], "--out /proc/cllnn-run cannot be written: /proc is not writable"),
        (["train", "--out", "{root}/FILE"], "--out {root}/FILE cannot be written: it is a file"),
        (["convert", "{root}/model.keras", "--out", "{root}/FILE/a"], "{root}/FILE is a file, not a directory"),
        (["parity", "{root}/model.keras", "{root}/DIR", "--json", "{root}/DIR"],
         "--json {root}/DIR cannot be written: it is a directory; give a file name"),
        (["parity", "{root}/model.keras", "{root}/DIR", "--junit", "{root}/no/such/dir/p.xml"],
         "--junit {root}/no/such/dir/p.xml cannot be written: directory {root}/no/such/dir does not exist"),
        (["run", "--config", "{root}/bogus.toml", "--out", "{root}/run"],
         "unknown format(s) ['bogus']; choose from tflite-fp32"),
        (["train", "--config", "{root}/bogus.toml", "--out", "{root}/run"], "unknown format(s) ['bogus']"),
        (["run", "--config", "{root}/big.toml", "--out", "{root}/run"],
         "model is too large: reservoir_dim 1099511627776"),
        (["convert", "{root}/model.keras", "--out", "{root}/out", "--recipe", "head=int4"],
         "unknown precision(s) {{'head': 'int4'}} in recipe; choose from float32, int16x8, int8"),
        (["run", "--config", "{root}/recipe.toml", "--out", "{root}/run"],
         "unknown stage(s) ['conv'] in recipe; stages: cnn, reservoir, lstm, head"),
        (["convert", "{root}/model.keras", "--out", "{root}/out", "--board", "uno"],
         "unknown board 'uno'; choose from nano33-ble, stm32h743, stm32f746, nrf52832"),
        (["run", "--out", "{root}/run", "--board", "nano33-ble", "--ram-kib", "0"],
         "ram_kib must be a positive whole number of KiB, got 0"),
        (["run", "--config", "{root}/board.toml", "--out", "{root}/run"], "export.flash_kib must be >= 0"),
        (["sweep", "{root}/model.keras", "--out", "{root}/sweep", "--board", "uno"], "unknown board 'uno'"),
    ],
)
def test_bad_outputs_and_configs_exit_2_before_the_work_creating_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None, argv: list[str], message: str
) -> None:
    (tmp_path / "FILE").write_text("mine")
    (tmp_path / "DIR").mkdir()
    (tmp_path / "bogus.toml").write_text('[export]\nformats = ["bogus"]\n')
    (tmp_path / "big.toml").write_text(f"[model]\nreservoir_dim = {2**40}\n")
    (tmp_path / "recipe.toml").write_text('[export]\nrecipe = { conv = "int8" }\n')
    (tmp_path / "board.toml").write_text('[export]\nflash_kib = -1\n')
    before = _tree(tmp_path)
    code = main([arg.format(root=tmp_path) for arg in argv])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert message.format(root=tmp_path) in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _tree(tmp_path) == before and (tmp_path / "FILE").read_text() == "mine"


def test_run_with_missing_data_does_not_create_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--data", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "run")])
    assert code == EXIT_USAGE
    assert "nonexistent" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_tensorflow_start_up_banners_are_hidden_unless_verbose(tmp_path: Path) -> None:
    """A command that imports TensorFlow (convert, here refusing a file that is no model) prints none of
    TensorFlow's C++ start-up lines (oneDNN, CPU features) on stderr; --verbose shows them again."""
    script = Path(sys.executable).parent / "cllnn-export"
    bogus = tmp_path / "model.keras"
    bogus.write_bytes(b"not a zip at all")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}

    def stderr_of(*flags: str) -> str:
        out = tmp_path / f"artifacts{len(flags)}"
        done = subprocess.run([str(script), *flags, "convert", str(bogus), "--out", str(out)],
                              capture_output=True, text=True, env=env)
        assert done.returncode == EXIT_USAGE, done.stderr
        assert "is not a Keras model file" in done.stderr
        return done.stderr

    quiet = stderr_of()
    for banner in ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "This TensorFlow binary"):
        assert banner not in quiet
    assert quiet.strip().count("\n") == 0  # the one error line
    verbose = stderr_of("--verbose")
    if platform.machine() in ("x86_64", "AMD64"):  # x86 builds print it; --verbose must not hide it
        assert "oneDNN custom operations are on" in verbose
    assert "is not a Keras model file" in verbose
