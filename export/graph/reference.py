"""The reference runner: a Keras model's named stage outputs behind the runtime's interface.

Exports are compared stage by stage with the trained model: the CNN features,
the reservoir's last state, the LSTM's output and the probabilities
(``PROBE_OUTPUTS``). ``KerasRunner`` offers ``predict`` and ``predict_outputs`` as a
``runtime`` model does, so a comparison reads alike whichever side it is on,
and it computes each image set once: the equivalence proof, every format's
export-time check and the parity gate of one process share one call.

Each runner traces its model once: one ``tf.function`` whose input signature leaves the batch open,
called on slices of ``BATCH`` images. ``keras.Model.predict`` traced again for the last, shorter
slice of every image set, and since TensorFlow counts the traces of all models' predict functions
together (one Python function), a run of a few models logged "triggered tf.function retracing"
warnings. The slices and the ops are predict's, so the outputs are the same numbers.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import keras
import numpy as np
import tensorflow as tf

from cllnn_edge.model import HEAD, LSTM, RESERVOIR
from export.graph.stages import PROBABILITIES, PROBE_OUTPUTS
from runtime.backends.images import as_image_batch

CACHED_IMAGE_SETS = 4
BATCH = 256  # images per call (keras.Model.predict's slices were of 256 too)


class KerasRunner:
    """A Keras model whose outputs are a dict of stage name -> tensor (``PROBE_OUTPUTS``)."""

    def __init__(self, model: keras.Model, name: str, source: keras.Model | None = None) -> None:
        self.model = model
        self.name = name
        self.source = source if source is not None else model  # the model the stages were read from
        self._cache: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        signature = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[signature])

    def predict_outputs(self, images: object) -> dict[str, np.ndarray]:
        """Every stage's output on ``images`` (uint8 or raw float pixels, as ``runtime`` takes)."""
        batch = as_image_batch(images, *self.model.input_shape[1:])
        key = _digest(batch)
        if key not in self._cache:
            self._cache[key] = self._compute(batch)
            while len(self._cache) > CACHED_IMAGE_SETS:
                self._cache.popitem(last=False)
        return self._cache[key]

    def predict(self, images: object) -> np.ndarray:
        """Class probabilities, float32 (N, classes)."""
        return self.predict_outputs(images)[PROBABILITIES]

    def _compute(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The model on ``batch``, ``BATCH`` images per call of its one traced function."""
        x = batch.astype(np.float32)
        parts = [self._forward(tf.constant(x[i : i + BATCH])) for i in range(0, len(x), BATCH)]
        return {name: np.concatenate([np.asarray(part[name]) for part in parts]).astype(np.float32)
                for name in PROBE_OUTPUTS if name in parts[0]}


def trained_reference(trained: keras.Model) -> KerasRunner:
    """The trained model as the reference: its stage outputs, the reservoir and LSTM at the last step."""
    sequence = trained.get_layer(RESERVOIR).output
    last_state = keras.layers.Lambda(lambda s: s[:, -1], name="reservoir_last")(sequence)
    outputs = (trained.get_layer("flatten").output, last_state, trained.get_layer(LSTM).output,
               trained.get_layer(HEAD).output)
    probe = keras.Model(trained.input, dict(zip(PROBE_OUTPUTS, outputs)), name="cllnn_probe")
    return KerasRunner(probe, f"trained model {trained.name!r}", source=trained)


def _digest(batch: np.ndarray) -> str:
    """The identity of an image set: its shape, dtype and bytes."""
    digest = hashlib.sha256(f"{batch.shape}{batch.dtype}".encode())
    digest.update(np.ascontiguousarray(batch).tobytes())
    return digest.hexdigest()
