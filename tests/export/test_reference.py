"""The reference runner traces its model once (no "triggered tf.function retracing" warnings, whatever
the image sets' sizes) and gives keras.Model.predict's numbers, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from cllnn_edge.config import ModelConfig
from cllnn_edge.data import load_splits
from cllnn_edge.model import build_model
from cllnn_edge.preprocessing import fit_standardizer
from export.graph.reference import BATCH, trained_reference
from export.graph.stages import PROBE_OUTPUTS
from export.graph.unroll import unroll

SMALL = dict(conv_filters=(4, 8, 16), reservoir_dim=48, lstm_units=12)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_splits("embedded").test.x[: BATCH + 44]


@pytest.mark.parametrize("graph", ["trained", "unrolled"])
def test_one_trace_per_runner_and_predicts_numbers(images: np.ndarray, graph: str) -> None:
    model = build_model(ModelConfig(**SMALL), fit_standardizer(images))
    runner = trained_reference(model) if graph == "trained" else unroll(model).runner()
    for n in (len(images), 8, 1, 3):  # a full slice and a short one, then sets of other sizes
        outputs = runner.predict_outputs(images[:n])
        expected = runner.model.predict(images[:n].astype(np.float32), verbose=0, batch_size=BATCH)
        assert list(outputs) == list(PROBE_OUTPUTS)
        for name in PROBE_OUTPUTS:
            assert outputs[name].dtype == np.float32 and outputs[name].shape[0] == n
            np.testing.assert_array_equal(outputs[name], np.asarray(expected[name], np.float32))
    assert runner._forward.experimental_get_tracing_count() == 1
