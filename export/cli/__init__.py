"""``cllnn-export``: the build host's command line. The top of export: nothing imports it.

``main`` (parse, plan, dispatch, exit codes), ``args`` (one function per subcommand: its options, its
planner, its handler's name), ``commands`` (the handlers that work: they load TensorFlow, so ``main``
imports them only once the plan is made) and ``sign`` (``keygen`` and ``sign``: no plan, no
TensorFlow). May import everything else of export, cllnn_edge and runtime.
"""
