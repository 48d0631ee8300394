"""runtime: on-device inference (numpy + LiteRT / ONNX Runtime only, never TensorFlow)."""
