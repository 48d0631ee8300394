"""cllnn_edge: the CLLNN model core (config, data, preprocessing, reservoir, model, training).

Importing the package registers its custom Keras layers, so
``keras.saving.load_model("model.keras")`` works once ``cllnn_edge`` is imported.
"""

from cllnn_edge import preprocessing, reservoir  # noqa: F401  (registers Keras layers)

__version__ = "0.1.0"
