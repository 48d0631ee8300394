"""The device example of docs/device.md runs as printed, in a process that never imports TensorFlow."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.runtime.conftest import TinyModels

ROOT = Path(__file__).parents[2]
DEVICE_PAGE = ROOT / "docs" / "device.md"


def _device_example() -> str:
    text = DEVICE_PAGE.read_text()
    marker = re.escape("<!-- run by: tests/runtime/test_readme.py::test_readme_device_example_runs -->")
    match = re.search(marker + r"\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/device.md lost its device example"
    return match.group(1)


def test_readme_device_example_runs(tiny: TinyModels, tmp_path: Path) -> None:
    code = _device_example()
    assert len(code.strip().splitlines()) <= 6
    target = tmp_path / "runs" / "demo" / "artifacts" / "cllnn_int8.tflite"
    target.parent.mkdir(parents=True)
    shutil.copy(tiny.int8_tflite, target)
    script = code + "\nimport sys\nassert 'tensorflow' not in sys.modules, 'runtime imported TensorFlow'\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\[\d \d \d \d\]\n", done.stdout)
