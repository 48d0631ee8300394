"""The formats: one registry entry per export format, and the converters behind them.

``registry`` (every format's declaration: converter, runtime, precision, checks), ``precision``
(precision per stage: recipes and calibration), the converters ``tflite`` / ``tflite_edit``, ``aeq``
(AI Edge Quantizer recipes), ``onnx`` and ``mcu`` (TFLite Micro's arena and C sources), ``file_checks`` (what a file of a format
must be: builtin kernels, dtypes; each entry names its own), and ``isolate`` / ``worker`` (each
conversion in its own process, so a converter crash becomes an error).

May import: ``export.graph``, ``cllnn_edge``, ``runtime``, ``export.errors``, ``export.lifeline``.
"""
