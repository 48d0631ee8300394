"""The graph: the trained Keras CLLNN rewritten into static ops, proven equivalent.

``unroll`` (recurrences unrolled, dead weights pruned, each removal recorded), ``weights`` (the
trained weights it copies in, split per gate), ``layers`` (the Keras layers the static graph needs)
and ``reference`` (a Keras model's named stage outputs behind the runtime's interface: what every
check compares against). Needs TensorFlow.

May import: ``cllnn_edge``, ``runtime.checks`` (the equivalence proof's comparator), ``export.errors``.
"""
