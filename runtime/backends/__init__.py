"""The backends: one loaded model file behind one interface.

``model`` holds ``RuntimeModel``, the base class that owns every public method and its checks
(inputs, batch chunking, closing); ``images`` says what ``predict`` accepts. Each backend fills the
small ``_impl`` hooks: ``litert`` (LiteRT, ``.tflite``; ``tflite_check`` vets the bytes before LiteRT
sees them), ``onnxrt`` (ONNX Runtime, ``.onnx``; ``onnx_ops`` reads the graph with the standard
library), ``tflm`` (TensorFlow Lite Micro, the ``tflm`` extra). A backend's library is imported only
when a file of its format is loaded.

May import: ``runtime.errors``, ``runtime.artifacts`` (tensor specs). Never a higher runtime package.
"""
