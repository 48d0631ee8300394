"""runtime.checks.metrics: the one definition of the accuracy drop (its sign stated) and of the top-1
disagreement, on arrays whose answers are counted by hand."""

from __future__ import annotations

import numpy as np

from runtime.checks.metrics import accuracy_drop, disagreement, probability_metrics

# Four images, classes 0..2: the trained model gets images 0-2 right, the file 0 and 1 (it calls
# image 2 class 0) and also image 3 (where the trained model said 1): the file disagrees on two.
LABELS = np.array([0, 1, 2, 2])
TRAINED = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
FILE = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]])


def test_a_file_less_accurate_than_the_trained_model_has_a_positive_drop() -> None:
    metrics = probability_metrics(TRAINED, np.vstack([FILE[:3], TRAINED[3:]]), LABELS)  # 2 of 4 vs 3 of 4
    assert (metrics["reference_accuracy"], metrics["accuracy"]) == (0.75, 0.5)
    assert accuracy_drop(metrics) == 0.25


def test_a_file_more_accurate_has_a_negative_drop_and_an_equal_one_zero() -> None:
    better = probability_metrics(TRAINED, np.vstack([TRAINED[:3], FILE[3:]]), LABELS)  # 4 of 4 vs 3 of 4
    assert accuracy_drop(better) == -0.25
    same = probability_metrics(TRAINED, FILE, LABELS)  # 3 of 4 each, on other images
    drop = accuracy_drop(same)
    assert drop == 0.0 and np.copysign(1.0, drop) == 1.0  # 0.0, not -0.0, in tables and JSON


def test_disagreement_is_the_share_of_images_whose_top1_differs() -> None:
    metrics = probability_metrics(TRAINED, FILE, LABELS)
    assert metrics["top1_agreement"] == 0.5
    assert disagreement(metrics["top1_agreement"]) == 0.5  # images 2 and 3, though accuracy is the same
    assert disagreement(probability_metrics(TRAINED, TRAINED)["top1_agreement"]) == 0.0
