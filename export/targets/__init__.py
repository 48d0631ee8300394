"""The devices the host drives (issue 26): a target is a transport plus a Python on the other side.

``spec`` (a TARGET string parsed and checked: ``local``, ``ssh://[user@]host[:port]``,
``emulated:CPU``), ``device`` (the one interface every transport fills: run a command there, move a
file there and back, inside the device's own working directory; ``cache_home``, where the host keeps
what it sets up once), ``local`` (a directory on this machine: for tests and x86 edge boxes), ``ssh``
(a machine over the OpenSSH client; ``ssh_agent`` is its device-side wrapper, sent with each command,
never imported), ``emulated`` (an arm64 Python under qemu-user, its root made once and cached),
``connect`` (the device a TARGET names: the one place that knows every transport), ``probe`` (what a
device has: ``runtime/probe.py`` sent and run there, its answer validated), ``wheels`` and ``bundle``
(an offline install of a run for a device's platform; ``install`` is the standard-library installer
the bundle carries, run on the device), ``remote_run`` (``cllnn-export target run``: bundle, send,
install, then the device's own verify, bench and select, results brought back into ``devices/NAME``),
``results`` and ``results_schema`` (a ``devices/NAME`` directory read and checked as strictly as a
manifest: by ``remote_run`` before it places one, by the report when it shows one).

May import: ``export.errors``, ``export.layout``, ``runtime``; the pipeline and the CLI drive it.
"""
