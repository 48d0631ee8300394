"""Size and memory: each format's file size, and the peak resident memory of a fresh
process that only imports ``runtime``, loads that format and predicts 100 times,
against a process that imports TensorFlow and does the same with the trained
Keras model. Peak RSS is VmHWM (``runtime.bench.latency.peak_rss_mib``): the process's own.

    python -m benchmarks.memory --work runs/bench --json memory.json [--quick]
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import save, say, section_args
from export.layout import RunLayout
from export.lifeline import child_env, guarded
from runtime.artifacts.manifest import contained, load_manifest

RUNTIME_PROCESS = """
import sys, numpy as np, runtime
from runtime.bench.latency import peak_rss_mib
model = runtime.load(sys.argv[1], threads=1)
image = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
for _ in range(int(sys.argv[2])):
    model.predict(image)
print(peak_rss_mib(), 'tensorflow' in sys.modules)
"""

KERAS_PROCESS = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
from cllnn_edge.model import load_trained
from runtime.bench.latency import peak_rss_mib
model = load_trained(sys.argv[1])
image = np.random.default_rng(0).integers(0, 256, (1, 28, 28, 1)).astype(np.float32)
for _ in range(int(sys.argv[2])):
    model.predict(image, verbose=0)
print(peak_rss_mib(), 'tensorflow' in sys.modules)
"""


def peak_of(script: str, target: Path, calls: int) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter; its peak RSS and whether it imported TensorFlow."""
    done = subprocess.run(guarded([sys.executable, "-c", script, str(target), str(calls)]),
                          capture_output=True, text=True, check=False, env=child_env())
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {target} failed: {done.stderr[-2000:]}")
    peak, imported_tf = done.stdout.split()[-2:]
    return {"peak_rss_mib": float(peak), "imported_tensorflow": imported_tf == "True"}


def main(argv: Sequence[str] | None = None) -> int:
    args = section_args(argv, "file size and peak memory per format, against TensorFlow")
    calls = 5 if args.quick else 100
    layout = RunLayout(args.work)
    manifest = load_manifest(layout.manifest)
    keras_file = layout.model
    say("memory: tensorflow + keras process")
    tensorflow = {"file_size": keras_file.stat().st_size, **peak_of(KERAS_PROCESS, keras_file, calls)}
    formats = {}
    for entry in manifest.artifacts:
        say(f"memory: runtime + {entry.format}")
        figures = peak_of(RUNTIME_PROCESS, contained(layout.artifacts, entry.file), calls)
        formats[entry.format] = {"file_size": entry.size, **figures,
                                 "vs_tensorflow": figures["peak_rss_mib"] / tensorflow["peak_rss_mib"]}
    save(args, {"calls": calls, "tensorflow": tensorflow, "formats": formats})
    return 0


if __name__ == "__main__":
    sys.exit(main())
