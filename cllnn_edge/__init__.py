"""cllnn_edge: the CLLNN model core (config, data, preprocessing, reservoir, model, training).

Importing the package loads neither Keras nor TensorFlow: the custom Keras layers register
where a model is built or loaded (``cllnn_edge.model``), so load a saved model with
``cllnn_edge.model.load_trained("model.keras")``.
"""

__version__ = "0.1.0"
