"""The model core's light modules load without Keras or TensorFlow (config, data and version
checks are used by commands that never build a model, e.g. ``cllnn-export`` on exported files)."""

from __future__ import annotations

import subprocess
import sys

LIGHT_MODULES = (
    "cllnn_edge",
    "cllnn_edge.errors",
    "cllnn_edge.config",
    "cllnn_edge.data",
    "cllnn_edge.idx",
    "cllnn_edge.sources",
    "cllnn_edge.train_files",
    "cllnn_edge.versions",
    "cllnn_edge.distribute",
)


def test_light_modules_import_neither_keras_nor_tensorflow() -> None:
    script = (
        f"import sys\nimport {', '.join(LIGHT_MODULES)}\n"
        "print(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_loading_a_model_registers_the_custom_layers() -> None:
    """``cllnn_edge.model`` (where models are built and loaded) registers the layers on import."""
    script = (
        "import keras, cllnn_edge.model\n"
        "print(all(keras.saving.get_registered_object(f'cllnn_edge>{name}') is not None"
        " for name in ('Standardize', 'LiquidCell')))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stdout + result.stderr
