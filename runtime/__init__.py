"""runtime: on-device inference (numpy + LiteRT / ONNX Runtime only, never TensorFlow).

    import runtime
    with runtime.load("cllnn_int8.tflite") as model:
        probabilities = model.predict(images)  # uint8 (N, 28, 28) -> float32 (N, 10)

A file with several outputs (a stage probe written by ``export`` under
``probes/``) loads too; ``model.predict_outputs(images)`` returns each output
as float32, keyed by output name (``model.output_specs``), and ``predict`` refuses it.

Backends import ai-edge-litert / onnxruntime only when a file of their format
is loaded, so this package imports with numpy and either one of them alone.
TensorFlow Lite Micro (``runtime.backends.tflm``, the ``tflm`` extra) runs a ``.tflite``
as a microcontroller does, for a file whose manifest entry says ``"tflm"`` or
with ``load(path, backend="tflm")``; board budgets are ``runtime.deploy.boards``.

Also here, because a device needs them and they need only numpy: the
tolerance table (``runtime.checks.tolerances``), the comparator (``runtime.checks.compare``,
``runtime.checks.metrics``), the parity report and per-file loop (``runtime.checks.parity``),
the check set kept beside exported files (``runtime.artifacts.checkset``), the
command that checks files against it (``runtime.checks.verify``, ``cllnn-bench
verify``) and the one that chooses, on the device, the file to deploy
(``runtime.cli.select``, ``runtime.deploy.directory``, ``cllnn-bench select``).
Signed artefacts (``runtime.artifacts.signing``): ``runtime.load(path, trusted_key="cllnn-signing.pub")``
loads only files listed in a manifest signed by that key; checking needs ``cryptography``
(``pip install 'cllnn-edge[signing]'``), imported only when a key is given.
``cllnn_edge`` and ``export`` import these; nothing here imports them.
"""

from runtime.errors import (
    EdgeRuntimeError,
    InferenceError,
    InputError,
    ModelClosedError,
    ModelLoadError,
    SignatureError,
)
from runtime.backends.litert import LiteRTModel, OpDtypes, tflite_op_dtypes
from runtime.loader import load
from runtime.artifacts.manifest import ManifestError, TensorSpec
from runtime.backends.model import RuntimeModel
from runtime.backends.onnxrt import OnnxRuntimeModel

__all__ = [
    "EdgeRuntimeError",
    "InferenceError",
    "InputError",
    "LiteRTModel",
    "ManifestError",
    "ModelClosedError",
    "ModelLoadError",
    "OnnxRuntimeModel",
    "OpDtypes",
    "RuntimeModel",
    "SignatureError",
    "TensorSpec",
    "load",
    "tflite_op_dtypes",
]
