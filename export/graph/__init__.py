"""The graph: the trained Keras CLLNN rewritten into static ops, proven equivalent.

``unroll`` (recurrences unrolled, dead weights pruned, each removal recorded) and ``layers`` (the Keras
layers the static graph needs). Needs TensorFlow.

May import: ``cllnn_edge``, ``runtime.checks`` (the equivalence proof's comparator), ``export.errors``.
"""
