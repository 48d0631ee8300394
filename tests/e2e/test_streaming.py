"""Acceptance (issue 15, streaming data): a shard directory of ~200 MB trains and exports in a process
whose peak memory shows the data was never loaded whole.

An address-space limit (RLIMIT_AS) does not fit TensorFlow: it needs about 1.5 GiB of address
space just to import and run one op (1 GiB fails with MemoryError), far above the data. This test
measures instead: the same job (``cllnn-export train`` then ``convert``: a tiny model, one epoch,
two TFLite formats) on a small and a large shard directory, in one process per directory that
reports, after each command, its peak resident set since the command began (``VmHWM``, reset
through ``/proc/self/clear_refs``; the converters' child processes never see the data set). Both
directories hold 1,000 validation and 1,000 test images, so export holds the same head of each;
they differ by 13,000 training images (160 MB of pixels, 639 MB as the float32 model input).
Streaming keeps a shuffle buffer of records (``SHUFFLE_RECORDS``, 12 MiB here) and a few batches in
flight, alike in both, so the peaks may differ by noise (allocator caches, threads; measured within
+-8 MiB with ``MALLOC_ARENA_MAX=2`` and one conversion at a time) but not by the data. The bound,
``MAX_GROWTH``, is a quarter of the extra pixels as uint8 alone. As a control, the same ``train`` on
the same images as .npz files (the in-memory path) peaked at 1,078 and 3,342 MiB: +2.2 GiB.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cllnn_edge.shard_writer import write_shards

SHAPE = (64, 64, 3)  # 12,288 bytes per image
CLASSES = 5
SMALL_TRAIN, LARGE_TRAIN, HELD_OUT = 1_000, 14_000, 1_000  # large: 16,000 images, 197 MB of pixels
EXTRA_BYTES = (LARGE_TRAIN - SMALL_TRAIN) * int(np.prod(SHAPE))
MAX_GROWTH = EXTRA_BYTES // 4  # 40 MB: the data loaded whole would add 160 MB (uint8) to 800 MB (+ float32)
TINY = """
[model]
conv_filters = [4]
reservoir_dim = 16
lstm_units = 8

[train]
epochs = 1
batch_size = 16
learning_rate = 0.01
min_learning_rate = 0.0001

[export]
formats = ["tflite-fp32", "tflite-int8"]
workers = 1
"""
MEASURE = (  # runs cllnn-export commands in one process; after each, the peak resident set since it began
    "import json, re, sys\n"
    "from pathlib import Path\n"
    "from export.cli.main import main\n"
    "for argv in json.loads(sys.argv[1]):\n"
    "    Path('/proc/self/clear_refs').write_text('5')  # VmHWM := the current resident set\n"
    "    code = main(argv)\n"
    "    peak = re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text()).group(1)\n"
    "    print(f'{argv[0]}: exit {code}, peak_rss_kib={peak}')\n"
    "    if code:\n"
    "        sys.exit(code)\n"
)


def learnable(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB images a tiny model learns in one epoch: a fixed random pattern per class under noise."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(0).integers(0, 256, size=(CLASSES, *SHAPE), dtype=np.uint8) // 4 * 3
    labels = np.arange(count, dtype=np.int64) % CLASSES
    rng.shuffle(labels)
    images = rng.integers(0, 64, size=(count, *SHAPE), dtype=np.uint8)  # noise 0..63 + pattern 0..189
    images += patterns[labels]
    return images, labels


def shard_dir(path: Path, train: int) -> Path:
    return write_shards({"train": learnable(train, 1), "val": learnable(HELD_OUT, 2),
                         "test": learnable(HELD_OUT, 3)}, path, per_shard=1000)


def peak_rss(data: Path, out: Path, config: Path) -> tuple[dict[str, int], subprocess.CompletedProcess[str]]:
    """Peak resident bytes of one process after ``cllnn-export train`` and after ``convert`` on ``data``
    (the peak after train is the data's phase: convert's own could hide it). Convert checks every
    file against the trained model on the first test images."""
    model, artifacts = out / "train" / "model.keras", out / "artifacts"
    commands = [["train", "--data", str(data), "--config", str(config), "--out", str(out / "train")],
                ["convert", str(model), "--config", str(config), "--out", str(artifacts)]]
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # fewer per-thread malloc arenas: a steadier peak
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(commands)],
                          capture_output=True, text=True, timeout=600, env=env)
    peaks = {name: int(kib) * 1024 for name, kib in re.findall(r"^(\w+): exit 0, peak_rss_kib=(\d+)$",
                                                                 done.stdout, re.MULTILINE)}
    assert done.returncode == 0 and len(peaks) == 2, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    return peaks, done


@pytest.mark.slow
def test_a_200_mb_shard_directory_trains_and_exports_without_loading_it(tmp_path: Path) -> None:
    started = time.perf_counter()
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    small_dir = shard_dir(tmp_path / "small", SMALL_TRAIN)
    large = shard_dir(tmp_path / "large", LARGE_TRAIN)
    large_bytes = sum(p.stat().st_size for p in large.iterdir())
    assert large_bytes > 195 * 10**6
    small, _ = peak_rss(small_dir, tmp_path / "small-run", config)
    large_peaks, done = peak_rss(large, tmp_path / "large-run", config)
    growth = {stage: large_peaks[stage] - small[stage] for stage in small}
    print("peak RSS (MiB), small / large / growth: " + ", ".join(
        f"after {stage} {small[stage] / 2**20:.0f} / {large_peaks[stage] / 2**20:.0f} / {growth[stage] / 2**20:+.1f}"
        for stage in small) + f"; bound {MAX_GROWTH / 2**20:.0f}; shards {large_bytes / 2**20:.0f} MiB; "
        f"{time.perf_counter() - started:.0f} s")
    assert max(growth.values()) < MAX_GROWTH
    assert f"data: {large}: train {LARGE_TRAIN}, val {HELD_OUT}, test {HELD_OUT}" in done.stdout
    assert len(list((tmp_path / "large-run" / "artifacts").glob("*.tflite"))) == 2
    assert re.search(r"tflite-int8 +ok ", done.stdout) and re.search(r"tflite-fp32 +ok ", done.stdout)
