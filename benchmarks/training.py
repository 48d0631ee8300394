"""Training: cllnn_edge's training against the seed's code, on the same data, batch and machine.

Speed: both models at the seed's hyperparameters, compiled as their code
compiles them (the seed: Keras' defaults; cllnn_edge: ``cllnn_edge.train``),
one epoch each in alternating rounds on the same 64-image batches of the
embedded digits. Two figures per model: the median step time Keras' batch
callbacks see, and the epoch's wall time per step (what Keras' "ms/step"
shows, ``fit`` overhead included).

Accuracy: each trained for the same epochs from the same seeds, the seed's
way (its per-split StandardScaler, one-hot labels, ``fit`` as written) and
cllnn_edge's (``cllnn_edge.train.train``), on the same splits; test accuracy
of each.

    python -m benchmarks.training --json training.json [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import keras
import numpy as np

from benchmarks.common import save, say, section_args
from benchmarks.seed import seed_inputs, seed_model
from cllnn_edge.config import Config
from cllnn_edge.data import Split, load_splits
from cllnn_edge.model import build_model
from cllnn_edge.preprocessing import fit_standardizer
from cllnn_edge.train import StepTimer, compile_model, train

BATCH = 64


def speed(quick: bool) -> dict[str, Any]:
    rounds, steps = (1, 4) if quick else (8, 57)
    cfg = Config()
    splits = load_splits("embedded")
    count = BATCH * steps
    raw = splits.train.x[:count].astype(np.float32)[..., None]
    labels = splits.train.y[:count]
    seed = seed_model(cfg.model.seed)
    keras.utils.set_random_seed(cfg.model.seed)
    ours = build_model(cfg.model, fit_standardizer(splits.train.x))
    compile_model(ours, cfg)
    contenders = {
        "seed": (seed, seed_inputs(splits.train.x[:count]), keras.utils.to_categorical(labels, 10)),
        "cllnn_edge": (ours, raw, labels),
    }
    step_s: dict[str, list[float]] = {name: [] for name in contenders}
    epoch_ms: dict[str, list[float]] = {name: [] for name in contenders}
    for model, x, y in contenders.values():  # warm-up: tracing and compilation
        model.fit(x[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, epochs=1, verbose=0)
    for index in range(rounds):
        for name, (model, x, y) in contenders.items():
            timer = StepTimer()
            started = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[timer])
            epoch_ms[name].append((time.perf_counter() - started) / steps * 1e3)
            step_s[name].extend(timer.epoch_steps[0])
        say(f"  training speed: round {index + 1}/{rounds}")
    rows = {
        name: {
            "median_step_ms": statistics.median(step_s[name]) * 1e3,
            "epoch_ms_per_step": statistics.median(epoch_ms[name]),
            "epoch_s_full_embedded": statistics.median(epoch_ms[name]) * 57 / 1e3,
        }
        for name in contenders
    }
    return {
        "rows": rows,
        "step_ratio": rows["cllnn_edge"]["median_step_ms"] / rows["seed"]["median_step_ms"],
        "epoch_ratio": rows["cllnn_edge"]["epoch_ms_per_step"] / rows["seed"]["epoch_ms_per_step"],
        "settings": {"rounds": rounds, "steps": steps, "batch": BATCH},
    }


def accuracy(quick: bool) -> dict[str, Any]:
    epochs, seeds = (1, (0,)) if quick else (10, (0, 1))
    splits = load_splits("embedded")
    if quick:  # a smoke run: a few batches only
        splits = replace(splits, train=Split(splits.train.x[:256], splits.train.y[:256]))
    runs = []
    for seed in seeds:
        cfg = Config().replace("train", epochs=epochs).replace("model", seed=seed)
        with tempfile.TemporaryDirectory() as out:
            ours = train(cfg, splits, out, verbose=0).history["final"]["test_accuracy"]
        model = seed_model(seed)
        one_hot = {name: keras.utils.to_categorical(getattr(splits, name).y, 10)
                   for name in ("train", "val", "test")}
        model.fit(seed_inputs(splits.train.x), one_hot["train"], epochs=epochs, batch_size=BATCH,
                  validation_data=(seed_inputs(splits.val.x), one_hot["val"]), verbose=0)
        _, theirs = model.evaluate(seed_inputs(splits.test.x), one_hot["test"], verbose=0)
        runs.append({"seed": seed, "cllnn_edge": float(ours), "seed_code": float(theirs)})
        say(f"  accuracy, seed {seed}: cllnn_edge {ours:.4f}, seed's code {theirs:.4f}")
    return {
        "epochs": epochs,
        "test_images": len(splits.test),
        "runs": runs,
        "mean": {name: float(np.mean([r[name] for r in runs])) for name in ("cllnn_edge", "seed_code")},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = section_args(argv, "training speed and accuracy against the seed's code")
    say("training: speed, interleaved epochs")
    results = {"speed": speed(args.quick)}
    say("training: accuracy after the same epochs")
    results["accuracy"] = accuracy(args.quick)
    save(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
