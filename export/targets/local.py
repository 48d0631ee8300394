"""``local``: a working directory on this machine, driven through the same ``Device`` calls as a
remote one (for the tests, and for an x86 edge box that is the machine itself).

Commands run with the directory as their current one, in a process group of their own. Files move
by copy into a temporary name beside the destination, then a rename: whole or not at all.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from export.errors import TargetError
from export.targets.device import DEFAULT_TIMEOUT, Completed, Device, relative, run_process
from export.targets.spec import TargetSpec
from runtime.atomic import atomic_path


class LocalDevice(Device):
    """This machine, in ``root``; ``python`` defaults to the interpreter running the host."""

    def __init__(self, spec: TargetSpec, root: Path, python: str = sys.executable) -> None:
        super().__init__(spec, python)
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TargetError(f"target {spec.text}: cannot create its directory {self.root}: "
                              f"{exc.strerror or exc}") from exc

    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
            env: dict[str, str] | None = None) -> Completed:
        return run_process(argv, spec=self.spec, timeout=timeout, cwd=self.root, env={**os.environ, **(env or {})})

    def put(self, local: Path, remote: PurePosixPath) -> None:
        self._copy(Path(local), self.root / relative(remote), None)

    def get(self, remote: PurePosixPath, local: Path, *, max_bytes: int) -> None:
        self._copy(self.root / relative(remote), Path(local), max_bytes)

    def _copy(self, source: Path, destination: Path, max_bytes: int | None) -> None:
        try:
            if max_bytes is not None and source.stat().st_size > max_bytes:
                raise TargetError(f"target {self.spec.text}: {source.name} is {source.stat().st_size:,} bytes, "
                                  f"more than the {max_bytes:,} accepted")
            destination.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(destination) as temporary:
                shutil.copyfile(source, temporary)
        except OSError as exc:
            raise TargetError(f"target {self.spec.text}: cannot copy {source} to {destination}: "
                              f"{exc.strerror or exc}") from exc
