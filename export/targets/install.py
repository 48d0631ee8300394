"""Install an offline bundle on the device: ``python3 install.py [--envs DIR] [--json]``.

Shipped inside every bundle (``export.targets.bundle`` copies this file there as ``install.py``)
and run by the device's own Python, so it uses the standard library only and imports nothing of
this project. Steps, each refusing with a message that says what to do:

1. ``bundle.json`` read (the bundle manifest, written last: a directory without it is no bundle),
   and this machine checked against it: CPU architecture (a 32-bit OS on a 64-bit board is named as
   such), Python X.Y, glibc at least what the wheels need.
2. Every file ``bundle.json`` lists checked against its size and SHA-256; a file in ``wheels/`` that
   it does not list is refused too (pip would take it).
3. ``python -m venv --without-pip`` (no ``ensurepip`` needed: Debian splits it off into
   python3-venv) and the bundle's own pip wheel installing every listed wheel with ``--no-index``
   and no pip configuration (``PIP_CONFIG_FILE`` = devnull, no ``PIP_*`` variables): nothing is
   fetched, whatever the device's pip.conf says. The new environment must import the runtime.
4. The environment is built in ``DIR/.KEY.partial-*`` and renamed to ``DIR/KEY`` only when complete;
   ``KEY`` is ``env_key``: the wheels' hashes and the Python, so a second install of the same bundle
   (or of a bundle with other artefacts but the same wheels) does nothing. An interrupted install
   leaves at most a ``.partial`` directory, which the next install removes; nothing named ``KEY``.
   Installers of one key take turns (``DIR/.KEY.lock``): the second finds the first's environment.

Exit 0: installed (or already there); 2: the bundle or this machine cannot be used.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BUNDLE_JSON = "bundle.json"
BUNDLE_FORMAT = "cllnn-edge-bundle/1"
WHEELS_DIR, ARTIFACTS_DIR, INSTALLER = "wheels", "artifacts", "install.py"
MAX_BUNDLE_JSON = 4 * 1024 * 1024
EXIT_OK, EXIT_USAGE = 0, 2
RUNTIME_IMPORTS = "import runtime, numpy, fastjsonschema"  # what every device environment must import


class BundleError(Exception):
    """The bundle or this machine cannot be used; the message says why and what to do."""


def env_key(bundle: dict[str, Any]) -> str:
    """The installed environment's name: what goes into it (each wheel's SHA-256, the Python, the
    platform), not the artefacts, so new files with the same runtime reuse it."""
    wheels = sorted((f["path"], f["sha256"]) for f in bundle["files"] if f["path"].startswith(f"{WHEELS_DIR}/"))
    text = json.dumps([bundle["platform"], bundle["python"], wheels], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_bundle(directory: Path) -> dict[str, Any]:
    """``directory/bundle.json``, with the fields this installer uses checked."""
    path = directory / BUNDLE_JSON
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BUNDLE_JSON + 1)
    except FileNotFoundError:
        raise BundleError(f"{directory} holds no {BUNDLE_JSON}: not a complete bundle (make it again with "
                          f"'cllnn-export target bundle')") from None
    if len(raw) > MAX_BUNDLE_JSON:
        raise BundleError(f"{path} is larger than {MAX_BUNDLE_JSON:,} bytes; refusing it")
    try:
        bundle = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{path} is not JSON: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: expected format {BUNDLE_FORMAT!r}, got "
                          f"{bundle.get('format') if isinstance(bundle, dict) else type(bundle).__name__!r}")
    for key in ("platform", "machine", "python", "glibc", "files", "requirements"):
        if key not in bundle:
            raise BundleError(f"{path}: no {key!r}")
    for item in bundle["files"] if isinstance(bundle["files"], list) else [None]:
        if not (isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("size"), int)
                and isinstance(item.get("sha256"), str) and len(item["sha256"]) == 64):
            raise BundleError(f"{path}: 'files' holds {item!r}; expected {{path, sha256, size}} objects")
    return bundle


def check_machine(bundle: dict[str, Any]) -> None:
    """This machine can run the bundle's wheels: architecture, Python X.Y, glibc."""
    machine, wanted = platform.machine(), bundle["machine"]
    if machine != wanted:
        hint = (" (a 32-bit OS: LiteRT has no armv7l wheels; install a 64-bit OS, e.g. Raspberry Pi OS 64-bit)"
                if machine.startswith("armv") else "")
        raise BundleError(f"this bundle is for {bundle['platform']} ({wanted}), this machine is {machine}{hint}; "
                          f"make one with 'cllnn-export target bundle --platform'")
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if python != bundle["python"]:
        raise BundleError(f"this bundle is for Python {bundle['python']}, {sys.executable} is Python {python}; "
                          f"run install.py with python{bundle['python']} or make a bundle with --python {python}")
    libc, version = platform.libc_ver()
    if libc != "glibc" or _version(version) < _version(bundle["glibc"]):
        raise BundleError(f"the bundle's wheels need glibc >= {bundle['glibc']}, this machine has "
                          f"{libc or 'no glibc'} {version}; upgrade the OS")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def check_files(directory: Path, bundle: dict[str, Any]) -> None:
    """Every listed file there, whole and unchanged; nothing unlisted in ``wheels/``."""
    listed = set()
    for item in bundle["files"]:
        name = str(item["path"])
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or "" in parts:
            raise BundleError(f"{BUNDLE_JSON} lists {name!r}: not a plain path inside the bundle")
        path = directory / name
        if path.is_symlink() or not path.is_file():
            raise BundleError(f"{path} is missing or not a regular file; copy the whole bundle again")
        if path.stat().st_size != item["size"] or _sha256(path) != item["sha256"]:
            raise BundleError(f"{path} does not match {BUNDLE_JSON} (size {path.stat().st_size:,}, expected "
                              f"{item['size']:,} and SHA-256 {item['sha256'][:16]}...): the copy is cut or the "
                              f"file was changed; copy the bundle again")
        listed.add(name)
    extra = sorted(f"{WHEELS_DIR}/{p.name}" for p in (directory / WHEELS_DIR).iterdir()
                   if f"{WHEELS_DIR}/{p.name}" not in listed)
    if extra:
        raise BundleError(f"{directory / WHEELS_DIR} holds files {BUNDLE_JSON} does not list: {extra}; remove them")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install(directory: Path, envs: Path, progress: Any = print) -> tuple[Path, bool]:
    """Check the bundle in ``directory`` and install it under ``envs``: (the environment, whether it
    was made now). Raises ``BundleError``."""
    directory = directory.resolve()
    bundle = read_bundle(directory)
    check_machine(bundle)
    check_files(directory, bundle)
    final = envs.resolve() / env_key(bundle)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second installer of the same key waits, then finds it there
        if final.is_dir():  # only a complete environment is ever renamed to its key
            return final, False
        for stale in final.parent.glob(f".{final.name}.partial-*"):  # an earlier install, cut mid-way
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
        try:
            _make_env(partial, directory, bundle, progress)
            _repoint(partial, final)
            os.rename(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return final, True


def _make_env(env: Path, directory: Path, bundle: dict[str, Any], progress: Any) -> None:
    wheels = [directory / f["path"] for f in bundle["files"] if f["path"].startswith(f"{WHEELS_DIR}/")]
    pip = next((w for w in wheels if w.name.startswith("pip-")), None)
    if pip is None:
        raise BundleError(f"{BUNDLE_JSON} lists no pip wheel; make the bundle again")
    progress(f"creating {env.name} with {sys.executable}")
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)],
         "python -m venv (on Debian and Raspberry Pi OS it comes with the python3-venv package)")
    python = str(env / "bin" / "python")
    progress(f"installing {len(wheels)} wheels from {directory / WHEELS_DIR} (--no-index)")
    _run([python, str(pip / "pip"), "install", "--no-index", "--find-links", str(directory / WHEELS_DIR),
          "--only-binary=:all:", "--no-cache-dir", "--no-compile", "--disable-pip-version-check", "--no-warn-script-location",
          "--quiet", *map(str, wheels)], "pip install --no-index")
    _run([python, "-c", RUNTIME_IMPORTS], "importing the runtime in the new environment")


def _run(argv: list[str], what: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no pip.conf: --no-index and these wheels only
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise BundleError(f"{what} failed (exit {done.returncode}): {tail}")


def _repoint(partial: Path, final: Path) -> None:
    """A venv's scripts name their interpreter by absolute path: point them at ``final`` before the
    rename, so the environment works the moment it appears under its name."""
    old, new = str(partial).encode(), str(final).encode()
    for script in (partial / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if old in data:
            script.write_bytes(data.replace(old, new))
    cfg = partial / "pyvenv.cfg"
    cfg.write_bytes(cfg.read_bytes().replace(old, new))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.py", description="Check this cllnn-edge bundle against "
                                     "bundle.json and install its wheels offline into a versioned environment.")
    parser.add_argument("--envs", type=Path, default=None, metavar="DIR",
                        help="where environments live (default: envs/ beside the bundle directory)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    directory = Path(__file__).resolve().parent
    envs = args.envs if args.envs is not None else directory.parent / "envs"
    say = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    try:
        env, made = install(directory, envs, say)
    except (BundleError, OSError) as exc:
        print(f"install.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = {"env": str(env), "installed": made, "cllnn_bench": str(env / "bin" / "cllnn-bench"),
              "artifacts": str(directory / ARTIFACTS_DIR)}
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"{'installed' if made else 'already installed'}: {env}")
        print(f"verify: {result['cllnn_bench']} verify {result['artifacts']}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
