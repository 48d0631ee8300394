"""The device side of ``export.targets.ssh``: sent as ``python3 -c SOURCE MODE ROOT ...``, never imported.

Standard library only, and written without f-strings or annotations so that an old python3 there still
runs far enough to say its version (the host then asks for a newer one, not for a traceback). Every call
starts ``MIN_PYTHON MODE ROOT`` (``MIN_PYTHON`` as "3.10": older is refused; ROOT: ``~`` is the home).

    run ROOT ENV_JSON ARGV...   the command, in ROOT, in a process group of its own; when this
                                process's stdin ends (the host's ssh died: a timeout, Ctrl-C, a lost
                                connection), the group is killed: sshd sends no signal to a command
                                run without a terminal, so nothing else would end it
    put ROOT PATH SIZE          stdin (exactly SIZE bytes) into a temporary name beside ROOT/PATH,
                                then renamed over it: whole or not at all
    get ROOT PATH MAX_BYTES     ROOT/PATH to stdout, refused before a byte is sent when larger

A failure of this wrapper itself (not of the command) is one stderr line ``MARK KIND: message`` and exit
``EXIT``; the host turns KIND into a ``TargetError`` saying what to do.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

MARK, EXIT, CHUNK, GRACE = "cllnn-edge-device:", 125, 1 << 16, 2.0


def fail(kind, message):
    sys.stderr.write("%s %s: %s\n" % (MARK, kind, message))
    sys.stderr.flush()
    os._exit(EXIT)


def grouped(number):
    return "{:,}".format(number)


def end_group(child):
    """The host is gone: TERM the command's group, KILL what is left after GRACE seconds."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.time() + GRACE
    while time.time() < deadline:
        try:
            os.killpg(child.pid, 0)
        except OSError:  # no member left
            return
        time.sleep(0.05)
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass


def watch_stdin(child, ending):
    while os.read(0, CHUNK):
        pass
    ending.set()
    end_group(child)


def run(root, env_json, argv):
    env = dict(os.environ)
    env.update(json.loads(env_json))
    try:
        child = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        fail("cannot-start", "cannot start %s: %s" % (argv[0], exc.strerror or exc))
    ending = threading.Event()
    watcher = threading.Thread(target=watch_stdin, args=(child, ending), daemon=True)
    watcher.start()
    code = child.wait()
    if ending.is_set():  # the host is gone: the command's whole group is ended before this process goes
        watcher.join()
    os._exit(code if code >= 0 else 128 - code)


def put(final, size):
    parent = os.path.dirname(final)
    temporary = os.path.join(parent, ".%s.%d.part" % (os.path.basename(final), os.getpid()))
    received = 0
    try:
        os.makedirs(parent, exist_ok=True)
        with open(temporary, "wb") as out:
            while True:
                chunk = os.read(0, CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if received != size:
            os.unlink(temporary)
            fail("truncated", "received %s of %s bytes" % (grouped(received), grouped(size)))
        os.replace(temporary, final)
    except OSError as exc:
        if os.path.exists(temporary):
            os.unlink(temporary)
        kind = "disk-full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "os-error"
        fail(kind, "writing %s: %s" % (final, exc.strerror or exc))


def get(path, max_bytes):
    try:
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size > max_bytes:
                fail("too-big", "%s is %s bytes, more than the %s accepted" % (path, grouped(size), grouped(max_bytes)))
            left = size
            while left > 0:
                chunk = source.read(min(CHUNK, left))
                if not chunk:
                    break
                sys.stdout.buffer.write(chunk)
                left -= len(chunk)
            sys.stdout.flush()
    except OSError as exc:
        fail("os-error", "reading %s: %s" % (path, exc.strerror or exc))


def main(minimum, mode, root, *rest):
    if sys.version_info < tuple(int(part) for part in minimum.split(".")):
        fail("old-python", "%s is Python %s, older than %s" % (sys.executable, sys.version.split()[0], minimum))
    root = os.path.expanduser(root)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        fail("disk-full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "os-error",
             "cannot create %s: %s" % (root, exc.strerror or exc))
    if mode == "run":
        run(root, rest[0], list(rest[1:]))
    elif mode == "put":
        put(os.path.join(root, rest[0]), int(rest[1]))
    elif mode == "get":
        get(os.path.join(root, rest[0]), int(rest[1]))
    else:
        fail("usage", "unknown mode %r" % mode)


if __name__ == "__main__":
    main(*sys.argv[1:])
