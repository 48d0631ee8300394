"""How far an export's probabilities are from the trained model's: one definition for
the export-time checks (``export.checks.describe``), the parity gate (``export.checks.parity``) and a
device's check (``runtime.checks.verify``); and the two figures read from them everywhere, the
accuracy drop (``accuracy_drop``) and the top-1 disagreement (``disagreement``). numpy only."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def probability_metrics(
    reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, float]:
    """Errors and agreement of two (N, classes) probability arrays; accuracies if labels are given."""
    ref, cand = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    diff = np.abs(ref - cand)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.sum(ref * cand, axis=1) / np.where(norms > 0, norms, 1.0)
    metrics = {
        "images": int(len(ref)),
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
        "top1_agreement": float(np.mean(ref.argmax(1) == cand.argmax(1))),
    }
    if labels is not None:
        reference_accuracy, accuracy = accuracy_of(ref, labels), accuracy_of(cand, labels)
        metrics.update(
            reference_accuracy=reference_accuracy,
            accuracy=accuracy,
            accuracy_delta=accuracy - reference_accuracy,
        )
    return metrics


def accuracy_drop(metrics: Mapping[str, float]) -> float:
    """How much less accurate the file is than the trained model, a fraction of the images (x 100:
    percentage points): the trained model's accuracy minus the file's. Positive = the file is less
    accurate than the trained model; negative = more accurate (its rounding flipped more boundary
    images the right way than the wrong); 0.0, never -0.0, when they are equal.

    ``metrics``: ``probability_metrics``' with labels (``reference_accuracy`` and ``accuracy``).
    """
    return metrics["reference_accuracy"] - metrics["accuracy"]


def disagreement(top1_agreement: float) -> float:
    """The share of images whose top-1 class differs from the trained model's (1 - top-1 agreement),
    from ``probability_metrics``' ``top1_agreement``. Unlike the accuracy drop it cannot go below
    zero: a file never disagrees with the trained model for the better."""
    return 1.0 - top1_agreement


def accuracy_of(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose most probable class is the label."""
    return float(np.mean(np.asarray(probs).argmax(axis=1) == labels))


def confusion_matrix(probs: np.ndarray, labels: np.ndarray, classes: int) -> list[list[int]]:
    """Counts[true label][predicted class], as nested lists (JSON-ready)."""
    predicted = np.asarray(probs).argmax(axis=1)
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels, dtype=np.int64), predicted), 1)
    return counts.tolist()
