"""Signed artefacts: sign the tiny export, tamper with it, and check every way of loading refuses it.

Real Ed25519 keys (``cllnn-export keygen``), real signatures (``cllnn-export sign``),
the ``artifacts`` fixture (tests/runtime/conftest.py) as the export. The refusals are
checked through the API (``SignatureError``) and through each command (exit 2, the
problem named on stderr): ``cllnn-bench``, ``cllnn-bench verify``, ``cllnn-bench select``
and ``cllnn-export parity``. A runtime-only subprocess shows verification needs no TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import runtime
from export.cli.main import main as export_main
from runtime.cli.main import main as bench_main
from runtime.errors import SignatureError
from runtime.artifacts.manifest import MANIFEST_NAME, ManifestError, load_manifest
from runtime.artifacts.signing import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    SIGNATURE_NAME,
    generate_keys,
    load_trusted_key,
    sign_artifacts,
)
from runtime.artifacts.opened import load_verified_manifest
from runtime.checks.verify import verify
from tests.runtime.helpers import describe, run_python

FAST = ["--runs", "3", "--warmup", "0"]
EXIT_USAGE = 2


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key pair written by the documented command: cllnn-export keygen --out DIR."""
    out = tmp_path_factory.mktemp("keys")
    assert export_main(["keygen", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("other_keys")
    generate_keys(out)
    return out


@pytest.fixture
def signed(artifacts: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The tiny export, signed with ``keys`` by cllnn-export sign."""
    assert export_main(["sign", str(artifacts), "--key", str(keys / PRIVATE_KEY_NAME)]) == 0
    assert "signed " in capsys.readouterr().out
    return artifacts


# -- keys and signing ---------------------------------------------------------------------------
def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_replaces_one(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = keys / PRIVATE_KEY_NAME, keys / PUBLIC_KEY_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes() and b"BEGIN PUBLIC KEY" in public.read_bytes()
    assert len(load_trusted_key(public).key_id) == 16
    before = private.read_bytes()
    assert export_main(["keygen", "--out", str(keys)]) == EXIT_USAGE
    assert "already exist" in capsys.readouterr().err
    assert private.read_bytes() == before
    assert sorted(p.name for p in keys.iterdir()) == [PRIVATE_KEY_NAME, PUBLIC_KEY_NAME]  # no temporaries


def test_the_signature_covers_the_manifest_bytes(signed: Path, keys: Path) -> None:
    document = json.loads((signed / SIGNATURE_NAME).read_text())
    assert document["algorithm"] == "ed25519" and document["signed_file"] == MANIFEST_NAME
    assert document["manifest_sha256"] == hashlib.sha256((signed / MANIFEST_NAME).read_bytes()).hexdigest()
    assert document["key_id"] == load_trusted_key(keys / PUBLIC_KEY_NAME).key_id
    assert load_verified_manifest(signed, keys / PUBLIC_KEY_NAME) == load_manifest(signed)


def test_sign_refuses_a_public_key_and_an_export_already_changed(
    artifacts: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export_main(["sign", str(artifacts), "--key", str(keys / PUBLIC_KEY_NAME)]) == EXIT_USAGE
    assert "not a PEM private key" in capsys.readouterr().err
    _flip_byte(artifacts / "int8.onnx")
    assert export_main(["sign", str(artifacts), "--key", str(keys / PRIVATE_KEY_NAME)]) == EXIT_USAGE
    assert "int8.onnx does not match its manifest checksum" in capsys.readouterr().err
    assert not (artifacts / SIGNATURE_NAME).exists()
    with pytest.raises(ManifestError, match="artifacts directory not found"):
        sign_artifacts(artifacts / "check_set.npz", keys / PRIVATE_KEY_NAME)
    with pytest.raises(ManifestError, match="manifest not found"):
        sign_artifacts(keys, keys / PRIVATE_KEY_NAME)


# -- verifying ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["int8.tflite", "fp32.onnx"])
def test_a_signed_file_loads_with_the_right_key(signed: Path, keys: Path, name: str) -> None:
    images = np.zeros((2, 28, 28), np.uint8)
    with runtime.load(signed / name, trusted_key=keys / PUBLIC_KEY_NAME) as model:
        assert model.predict(images).shape == (2, 10)
        assert model.manifest_entry is not None and model.manifest_entry.file == name
    with runtime.load(signed / name, trusted_key=(keys / PUBLIC_KEY_NAME).read_bytes()) as model:
        assert model.predict(images).shape == (2, 10)
    with runtime.load(signed / name) as model:  # no key asked for: checksums only, as before
        assert model.predict(images).shape == (2, 10)


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if offset is None else offset
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


def _change_model_byte(artifacts: Path, keys: Path, other: Path) -> Path:
    _flip_byte(artifacts / "int8.tflite", offset=len((artifacts / "int8.tflite").read_bytes()) - 100)
    return keys


def _change_manifest_byte(artifacts: Path, keys: Path, other: Path) -> Path:
    text = (artifacts / MANIFEST_NAME).read_bytes()
    assert text.count(b"tiny.keras") == 1
    (artifacts / MANIFEST_NAME).write_bytes(text.replace(b"tiny.keras", b"tinY.keras"))  # still valid JSON
    return keys


def _swap_model_and_its_checksum(artifacts: Path, keys: Path, other: Path) -> Path:
    """The attack a checksum alone cannot stop: another model, with the manifest updated to match."""
    old = hashlib.sha256((artifacts / "int8.tflite").read_bytes()).hexdigest()
    shutil.copyfile(artifacts / "fp32.tflite", artifacts / "int8.tflite")
    new = hashlib.sha256((artifacts / "int8.tflite").read_bytes()).hexdigest()
    manifest = (artifacts / MANIFEST_NAME).read_text()
    (artifacts / MANIFEST_NAME).write_text(manifest.replace(old, new))
    return keys


def _remove_signature(artifacts: Path, keys: Path, other: Path) -> Path:
    (artifacts / SIGNATURE_NAME).unlink()
    return keys


def _other_key(artifacts: Path, keys: Path, other: Path) -> Path:
    return other


def _signed_by_other_key(artifacts: Path, keys: Path, other: Path) -> Path:
    sign_artifacts(artifacts, other / PRIVATE_KEY_NAME)
    return keys


def _damaged_signature(artifacts: Path, keys: Path, other: Path) -> Path:
    document = json.loads((artifacts / SIGNATURE_NAME).read_text())
    document["signature"] = ("B" if document["signature"][0] == "A" else "A") + document["signature"][1:]
    (artifacts / SIGNATURE_NAME).write_text(json.dumps(document))
    return keys


Tamper = Callable[[Path, Path, Path], Path]  # (artifacts, keys, other keys) -> the key pair the device trusts
TAMPERING: dict[str, tuple[Tamper, str]] = {
    "model-byte": (_change_model_byte, "int8.tflite is not what was signed"),
    "manifest-byte": (_change_manifest_byte, "changed after it was signed"),
    "swapped-model-and-checksum": (_swap_model_and_its_checksum, "changed after it was signed"),
    "removed-signature": (_remove_signature, "is not signed: no manifest.sig"),
    "other-key": (_other_key, "is signed by another key"),
    "signed-by-other-key": (_signed_by_other_key, "is signed by another key"),
    "damaged-signature": (_damaged_signature, "the signature was altered"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_refused_by_load_and_cllnn_bench(
    signed: Path, keys: Path, other_keys: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper, message = TAMPERING[case]
    trusted = tamper(signed, keys, other_keys) / PUBLIC_KEY_NAME
    with pytest.raises(SignatureError, match=message):
        runtime.load(signed / "int8.tflite", trusted_key=trusted)
    assert bench_main([str(signed / "int8.tflite"), "--trusted-key", str(trusted), *FAST]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["model-byte", "manifest-byte", "removed-signature", "other-key"])
def test_tampering_is_refused_by_verify_select_and_parity(
    signed: Path, keys: Path, other_keys: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper, message = TAMPERING[case]
    message = "a file changed after signing" if case == "model-byte" else message  # found before any load
    trusted = str(tamper(signed, keys, other_keys) / PUBLIC_KEY_NAME)
    with pytest.raises(SignatureError, match=message):
        verify(signed, trusted_key=trusted)
    for argv in (["verify", str(signed), "--trusted-key", trusted],
                 ["select", str(signed), "--out", str(tmp_path / "deploy"), "--trusted-key", trusted, *FAST]):
        assert bench_main(argv) == EXIT_USAGE, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "deploy").exists()
    # parity refuses before it loads the trained model (here any file stands in for it)
    code = export_main(["parity", str(signed / "check_set.npz"), str(signed), "--trusted-key", trusted])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and message in err, err


def test_a_trusted_key_needs_a_manifest_and_a_public_key(
    signed: Path, keys: Path, tiny_path_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SignatureError, match="no manifest.json beside it"):
        runtime.load(tiny_path_copy, trusted_key=keys / PUBLIC_KEY_NAME)
    with pytest.raises(SignatureError, match="is a private key; give the public key"):
        runtime.load(signed / "int8.tflite", trusted_key=keys / PRIVATE_KEY_NAME)
    with pytest.raises(SignatureError, match="not a PEM public key"):
        runtime.load(signed / "int8.tflite", trusted_key=signed / MANIFEST_NAME)
    with pytest.raises(SignatureError, match="trusted key not found"):
        runtime.load(signed / "int8.tflite", trusted_key=keys / "nowhere.pub")
    assert bench_main([str(signed / "int8.tflite"), "--trusted-key", str(keys / PRIVATE_KEY_NAME)]) == EXIT_USAGE
    assert "is a private key" in capsys.readouterr().err


@pytest.fixture
def tiny_path_copy(tiny: object, tmp_path: Path) -> Path:
    return Path(shutil.copyfile(tiny.int8_tflite, tmp_path / "alone.tflite"))  # type: ignore[attr-defined]


# -- deploy ---------------------------------------------------------------------------------------
def test_select_deploys_the_signed_manifest_unchanged(
    signed: Path, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deploy"
    trusted = str(keys / PUBLIC_KEY_NAME)
    assert bench_main(["select", str(signed), "--out", str(out), "--trusted-key", trusted, *FAST]) == 0
    capsys.readouterr()
    assert (out / MANIFEST_NAME).read_bytes() == (signed / MANIFEST_NAME).read_bytes()
    assert (out / SIGNATURE_NAME).read_bytes() == (signed / SIGNATURE_NAME).read_bytes()
    selection = json.loads((out / "selection.json").read_text())
    assert selection["signature"].startswith("signed (checked with key ")
    chosen = out / selection["chosen"]
    with runtime.load(chosen, trusted_key=trusted) as model:
        assert model.predict(np.zeros((28, 28), np.uint8)).shape == (1, 10)
    _flip_byte(chosen)
    with pytest.raises(SignatureError, match="is not what was signed"):
        runtime.load(chosen, trusted_key=trusted)
    # a later select may replace it (manifest.sig is select's own)
    assert bench_main(["select", str(signed), "--out", str(out), *FAST]) == 0
    assert "not checked: no trusted key given" in json.loads((out / "selection.json").read_text())["signature"]


# -- no TensorFlow on the device ------------------------------------------------------------------
RUNTIME_ONLY_SCRIPT = """
import sys
import numpy as np
import runtime
from runtime.cli.main import main
artifacts, key = sys.argv[1], sys.argv[2]
for name in ("int8.tflite", "fp32.onnx"):
    with runtime.load(f"{artifacts}/{name}", trusted_key=key) as model:
        assert model.predict(np.zeros((3, 28, 28), np.uint8)).shape == (3, 10)
print("verify exit:", main(["verify", artifacts, "--trusted-key", key]))
heavy = ("tensorflow", "keras", "tf2onnx", "onnx", "cllnn_edge", "export")
print("heavy:", sorted(name for name in heavy if name in sys.modules))
print("cryptography:", "cryptography" in sys.modules)
"""


def test_a_signed_export_verifies_in_a_runtime_only_process(signed: Path, keys: Path) -> None:
    result = run_python(RUNTIME_ONLY_SCRIPT, str(signed), str(keys / PUBLIC_KEY_NAME))
    assert result.returncode == 0, describe(result)
    assert "verify exit: 0" in result.stdout and "heavy: []" in result.stdout, describe(result)
    assert "cryptography: True" in result.stdout, describe(result)


WITHOUT_CRYPTOGRAPHY_SCRIPT = """
import sys
sys.modules["cryptography"] = None  # as if the signing extra were not installed
import numpy as np
import runtime
artifacts, key = sys.argv[1], sys.argv[2]
with runtime.load(f"{artifacts}/int8.tflite") as model:  # no key: works as before
    model.predict(np.zeros((28, 28), np.uint8))
try:
    runtime.load(f"{artifacts}/int8.tflite", trusted_key=key)
except runtime.SignatureError as exc:
    print(f"SignatureError: {exc}")
"""


def test_without_cryptography_runtime_works_and_a_key_gives_a_clear_error(signed: Path, keys: Path) -> None:
    result = run_python(WITHOUT_CRYPTOGRAPHY_SCRIPT, str(signed), str(keys / PUBLIC_KEY_NAME))
    assert result.returncode == 0, describe(result)
    assert "SignatureError: " in result.stdout and "pip install 'cllnn-edge[signing]'" in result.stdout, \
        describe(result)


KEYGEN_AND_SIGN_SCRIPT = """
import sys
from export.cli.main import main
keys, artifacts = sys.argv[1], sys.argv[2]
print("keygen:", main(["keygen", "--out", keys]))
print("sign:", main(["sign", artifacts, "--key", keys + "/cllnn-signing.key"]))
print("heavy:", sorted(name for name in ("tensorflow", "keras", "cllnn_edge.model", "cllnn_edge.train") if name in sys.modules))
"""


def test_keygen_and_sign_need_no_tensorflow(artifacts: Path, tmp_path: Path) -> None:
    result = run_python(KEYGEN_AND_SIGN_SCRIPT, str(tmp_path / "keys"), str(artifacts))
    assert "keygen: 0" in result.stdout and "sign: 0" in result.stdout, describe(result)
    assert "heavy: []" in result.stdout, describe(result)
    load_verified_manifest(artifacts, tmp_path / "keys" / PUBLIC_KEY_NAME)
