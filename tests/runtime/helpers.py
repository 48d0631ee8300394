"""Run Python in a fresh process: crash-prone loads and import-isolation checks must not share ours."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Loads a model and reports a runtime error as "<ErrorClass>: <message>" with exit code 3.
LOAD_SCRIPT = """
import sys
import numpy as np
import runtime
try:
    with runtime.load(sys.argv[1]) as model:
        model.predict(np.zeros((2, 28, 28), np.uint8))
except (runtime.ModelLoadError, runtime.ManifestError) as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(3)
print("LOADED")
"""


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this interpreter; a negative return code means it died from a signal."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-2000:]}"
