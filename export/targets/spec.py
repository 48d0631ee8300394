"""A TARGET as the user writes it, parsed once and checked before anything is contacted.

``local``: this machine, in a directory of its own. ``ssh://[user@]host[:port]``: a machine reached
through the OpenSSH client (so ~/.ssh/config, agents, known_hosts and ProxyJump work as the user
expects). ``emulated:CPU``: an arm64 Python under qemu-user on this machine, the CPU one of
``EMULATED_CPUS``; its timings are labelled emulated and never used to choose by latency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from export.errors import TargetError

LOCAL, SSH, EMULATED = "local", "ssh", "emulated"
EMULATED_CPUS = ("cortex-a72", "cortex-a76", "max")  # qemu's -cpu names: Raspberry Pi 4, Pi 5, every feature
SSH_DEFAULT_PORT = 22
# A host name or address as ssh takes it: letters, digits, dots, dashes, underscores, or [IPv6].
# Neither starts with "-": ssh would take it for an option.
_SSH = re.compile(r"^ssh://(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?"
                  r"(?P<host>[A-Za-z0-9_][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])"
                  r"(?::(?P<port>\d{1,5}))?/?$")
# A device name (``--name``, ``NAME=TARGET``): the directory devices/NAME/, so a short plain word.
DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
USAGE = f"TARGET is {LOCAL}, ssh://[user@]host[:port] or {EMULATED}:CPU (CPU: {', '.join(EMULATED_CPUS)})"


@dataclass(frozen=True)
class TargetSpec:
    """One parsed TARGET. ``host``, ``user`` and ``port`` are set for ssh; ``cpu`` for emulated."""

    kind: str  # LOCAL, SSH or EMULATED
    text: str  # as the user wrote it: every message names the target by it
    host: str | None = None
    user: str | None = None  # None: ssh's own choice (~/.ssh/config, then the local user name)
    port: int | None = None  # None: ssh's own choice (~/.ssh/config, then 22)
    cpu: str | None = None

    @property
    def default_name(self) -> str:
        """The ``devices/NAME`` a run on this target gets when none is given: ``local``,
        ``emulated-cortex-a76``, or the ssh host with what a plain word cannot hold as ``-``."""
        if self.kind == SSH:
            return re.sub(r"[^A-Za-z0-9_-]", "-", str(self.host)).strip("-")[:40] or SSH
        return self.kind if self.cpu is None else f"{self.kind}-{self.cpu}"

    @property
    def emulated(self) -> bool:
        """Timings from it say nothing about a real board: never chosen by."""
        return self.kind == EMULATED


def parse_target(text: str) -> TargetSpec:
    """``text`` as a ``TargetSpec``; anything else is a ``TargetError`` saying what a TARGET is."""
    text = text.strip()
    if text == LOCAL:
        return TargetSpec(LOCAL, text)
    if text.startswith(f"{EMULATED}:"):
        cpu = text.split(":", 1)[1]
        if cpu not in EMULATED_CPUS:
            raise TargetError(f"target {text!r}: unknown emulated CPU {cpu!r}; {USAGE}")
        return TargetSpec(EMULATED, text, cpu=cpu)
    match = _SSH.match(text)
    if match is None:
        raise TargetError(f"target {text!r} is not one this toolkit drives; {USAGE}")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise TargetError(f"target {text!r}: port {port} is outside 1..65535")
    return TargetSpec(SSH, text, host=match["host"].strip("[]"), user=match["user"], port=port)


def parse_named_target(text: str) -> tuple[str, TargetSpec]:
    """``NAME=TARGET`` (``cllnn-export run --target``): the name becomes ``devices/NAME/``, so it is
    a short plain word."""
    name, sep, target = text.partition("=")
    if not sep or not DEVICE_NAME.match(name):
        raise TargetError(f"--target takes NAME=TARGET with NAME a plain word (letters, digits, - and _, "
                          f"up to 40), got {text!r}; {USAGE}")
    return name, parse_target(target)
