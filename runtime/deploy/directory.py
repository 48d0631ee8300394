"""Write the directory a device deploys from: the chosen file, its manifest, the selection.

``write_deploy(selection, artifacts_dir, out)`` leaves ``out`` holding exactly:

- the chosen model file, written under its own name from the bytes checked against its SHA-256, with
  its C sources (``mcu/``) where it is a microcontroller file;
- ``manifest.json`` with that file's entry alone (without its stage probe,
  which stays behind) and the export's metadata as the source manifest has
  it (config, versions, source model, data, unroll report), so
  ``runtime.load(out / file)`` checks the file's checksum against it;
- ``selection.json`` (``runtime.deploy.choose.Selection``): the machine, settings,
  budget and every candidate's figures with the reason it was or was not chosen.

The directory is built beside ``out`` under a temporary name and renamed into
place, so ``out`` never holds half of it; a failure removes the temporary.
``out`` may not exist yet, may be empty, or may hold what an earlier select
wrote (a ``selection.json`` of select's and at most the manifest and the file
it names), which is replaced: anything else there is refused, so a directory
of the user's is never overwritten. Replacing an earlier output renames it
aside first, then the new one in: a reader sees the old directory, the new
one, or (between the two renames) none, never a mixture.

A signed export (``manifest.sig`` beside its manifest, ``cllnn-export sign``)
is deployed with its ``manifest.json`` and ``manifest.sig`` copied byte for
byte instead of the reduced manifest: a reduced manifest would be new bytes the
signature does not cover, and a device has no private key to sign again. That
manifest lists every exported file (and the stage probes and check set),
of which ``out`` holds only the chosen one; ``runtime.load(out / file,
trusted_key=...)`` checks the signature and that one file's checksum, which is
all it needs. ``selection.json``'s ``signature`` says which form was written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

from runtime.atomic import write_bytes_atomic, write_json_atomic
from runtime.deploy.choose import SELECTION_NAME, TOOL, Selection
from runtime.artifacts.manifest import MANIFEST_NAME, MCU_DIR, ArtifactEntry, Manifest, ManifestError
from runtime.artifacts.opened import Artifacts
from runtime.artifacts.signing import SIGNATURE_NAME, TrustedKeyLike
from runtime.outputs import OutputPathError, check_output_dir


class DeployError(OutputPathError):
    """``--out`` cannot be written: it is a file, not writable, or a directory select did not write (the
    message says which)."""


def check_out_dir(out: str | Path) -> None:
    """Refuse an ``out`` that ``write_deploy`` may not replace; else return (it may not exist yet)."""
    out = Path(out)
    try:
        check_output_dir(out, "--out")  # a directory, or creatable, and writable
    except OutputPathError as exc:
        raise DeployError(str(exc)) from exc
    if not out.exists():
        return
    names = {p.name for p in out.iterdir()}
    if not names:
        return
    marker = out / SELECTION_NAME
    try:
        earlier = json.loads(marker.read_text())
        ours = earlier.get("tool") == TOOL
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        ours = False
    if not ours:
        raise DeployError(
            f"--out {out} is a non-empty directory that cllnn-bench select did not write (no {SELECTION_NAME} "
            f"of select's in it); give a new or empty directory"
        )
    allowed = {SELECTION_NAME, MANIFEST_NAME, SIGNATURE_NAME, MCU_DIR, str(earlier.get("chosen"))}
    foreign = sorted(names - allowed)
    if foreign:
        raise DeployError(
            f"--out {out} holds an earlier select's output but also {foreign}; move those away or give "
            f"another directory (select replaces the whole directory)"
        )


def write_deploy(
    selection: Selection, source: str | Path | Artifacts, out: str | Path, trusted_key: TrustedKeyLike | None = None
) -> Path:
    """Write ``out`` (see the module docstring) for ``selection``'s chosen file; returns the model's path.

    ``source``: the artefacts directory, or its ``Artifacts`` as select opened them (their manifest's
    bytes and the files' checked bytes are written; nothing is read again). With ``trusted_key``, a
    signed source's manifest is checked against it before it is copied.
    """
    chosen = selection.chosen
    if chosen is None:
        raise ValueError(f"nothing to deploy: {selection.verdict}")
    out = Path(out)
    check_out_dir(out)
    artifacts = Artifacts.at(source, trusted_key) if isinstance(source, Artifacts) else Artifacts.open(
        source, trusted_key)
    entry = artifacts.manifest.entry_for(chosen.file)
    if entry is None:
        raise ManifestError(f"{chosen.file} is not listed in {artifacts.manifest_path}")
    try:
        files = list(artifacts.delivered(entry))  # the file, and a microcontroller file's C sources
    except ManifestError as exc:
        raise ManifestError(f"{artifacts.directory / chosen.file} changed after it was verified; refusing to "
                            f"deploy it ({exc})") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for opened in files:
            name = opened.path.relative_to(artifacts.directory).as_posix()
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(work / name, opened.data)  # the bytes that were checked
        _write_manifest(work, artifacts, entry)
        selection.save_json(work / SELECTION_NAME)
        os.chmod(work, 0o777 & ~_umask())  # mkdtemp makes 0700; a deploy directory is read by others
        _swap_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out / entry.file


def _write_manifest(work: Path, artifacts: Artifacts, entry: ArtifactEntry) -> None:
    """A signed source's manifest and signature byte for byte; else a manifest listing ``entry`` alone."""
    if artifacts.signature is not None and artifacts.raw is not None:
        write_bytes_atomic(work / MANIFEST_NAME, artifacts.raw)
        write_bytes_atomic(work / SIGNATURE_NAME, artifacts.signature)
        return
    deployed = dataclasses.replace(entry, details=dataclasses.replace(entry.details, probe=None))
    metadata = dataclasses.replace(artifacts.manifest.metadata, failed=None)  # about other files
    write_json_atomic(work / MANIFEST_NAME, Manifest((deployed,), metadata).to_dict())


def _swap_into_place(work: Path, out: Path) -> None:
    """Rename ``work`` to ``out``; an earlier output is renamed aside first and removed after."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(work, out)  # over nothing or an empty directory: one atomic rename
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, aside / out.name)
    try:
        os.replace(work, out)
    except BaseException:
        os.replace(aside / out.name, out)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _remove_stale(out: Path) -> None:
    """Temporaries left beside ``out`` by a select that was killed."""
    for stale in [*out.parent.glob(f".{out.name}.*.tmp"), *out.parent.glob(f".{out.name}.*.old")]:
        shutil.rmtree(stale, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
