"""The files ``cllnn_edge.train`` writes into its output directory (importable without Keras)."""

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
PREPROCESSING_FILE = "preprocessing.json"
