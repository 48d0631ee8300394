"""``cllnn-bench``: the device's command. ``cllnn-bench MODEL...`` times models
(``runtime.bench.latency``), ``cllnn-bench verify`` checks exported files against the check set
(``runtime.checks.verify``), ``cllnn-bench select`` chooses the file to deploy (``runtime.cli.select``).

Kept apart from those modules so none of them imports another's command line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from runtime.cli.bench import main as bench_main
from runtime.cli.select import main as select_main
from runtime.cli.verify import main as verify_main

COMMANDS = ("verify", "select")  # a model file named like one of them: pass it as ./verify


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["verify"]:
        return verify_main(argv[1:])
    if argv[:1] == ["select"]:
        return select_main(argv[1:])
    return bench_main(argv)


if __name__ == "__main__":
    sys.exit(main())
