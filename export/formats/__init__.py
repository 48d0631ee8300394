"""The formats: one registry entry per export format, and the converters behind them.

``registry`` (every format's declaration: converter, runtime, precision, checks), ``precision``
(precision per stage: recipes and calibration), the converters ``tflite`` / ``tflite_edit``, ``aeq``
(AI Edge Quantizer recipes), ``onnx`` and ``mcu`` (TFLite Micro's arena and C sources), and ``isolate`` /
``worker`` (each conversion in its own process, so a converter crash becomes an error).

May import: ``export.graph``, ``export.checks.file_checks``, ``cllnn_edge``, ``runtime``, ``export.errors``.
"""
