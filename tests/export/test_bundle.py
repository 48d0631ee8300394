"""The offline bundle (``cllnn-export target bundle``) and its installer: real wheels from the package
index through pip (cached), a real venv installed with ``--no-index`` and no network, the device's
``cllnn-bench verify`` against the host's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export.cli.main import main
from export.errors import TargetError
from export.targets import install as installer
from export.targets.bundle import BundleResult, make_bundle
from export.targets.wheels import PLATFORMS, parse_platform, parse_python
from runtime.artifacts.manifest import load_manifest, sha256_file
from runtime.artifacts.signing import generate_keys, sign_artifacts
from runtime.checks.verify import verify

RUN = Path(__file__).parents[1] / "fixtures" / "run_a8fda90"  # all eight formats; its int8 files fail verify
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
X86 = PLATFORMS["linux-x86_64"]


def _no_network_prefix() -> list[str]:
    """A command prefix that runs a process with no network at all (a fresh network namespace)."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    pytest.skip("no network namespace here (unshare -n / -rn): cannot prove the install needs no network")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BundleResult, Path]:
    """One linux-x86_64 bundle of the fixture run for this Python, made with an empty wheel cache."""
    root = tmp_path_factory.mktemp("bundle")
    cache = root / "xdg" / "cllnn-edge" / "wheels"  # where XDG_CACHE_HOME=root/xdg puts it
    result = make_bundle(RUN, X86, PYTHON, root / "bundle", cache=cache)
    return root / "bundle", result, cache


def test_the_bundle_lists_every_file_with_its_hash_and_the_pins(bundles: tuple[Path, BundleResult, Path]) -> None:
    bundle, result, _ = bundles
    document = json.loads((bundle / installer.BUNDLE_JSON).read_text())
    listed = {item["path"]: item for item in document["files"]}
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert on_disk == {*listed, installer.BUNDLE_JSON}
    for name, item in listed.items():
        assert (sha256_file(bundle / name), (bundle / name).stat().st_size) == (item["sha256"], item["size"]), name
    manifest = load_manifest(RUN / "artifacts")
    versions = manifest.metadata.versions or {}
    for name in ("numpy", "onnxruntime", "ai-edge-litert"):  # the versions the files were verified with
        assert document["pins"][name] == f"{versions[name]} (from manifest)"
        assert any(n.startswith(f"wheels/{name.replace('-', '_')}-{versions[name]}-") for n in listed), name
    for name, _ in manifest.listed_files():
        assert f"artifacts/{name}" in listed
    assert (bundle / "artifacts" / "manifest.json").read_bytes() == (RUN / "artifacts" / "manifest.json").read_bytes()
    assert (document["platform"], document["machine"], document["python"]) == ("linux-x86_64", "x86_64", PYTHON)
    assert any(n.startswith("wheels/cllnn_edge-0.1.0-") for n in listed) and "install.py" in listed
    assert result.downloaded > 0 and result.files == len(on_disk)
    assert not list(bundle.parent.glob(".bundle.partial-*"))


def test_a_second_bundle_downloads_nothing_and_needs_no_index(bundles: tuple[Path, BundleResult, Path],
                                                              tmp_path: Path) -> None:
    bundle, _, cache = bundles
    env = {**os.environ, "XDG_CACHE_HOME": str(cache.parents[1]), "PIP_CONFIG_FILE": os.devnull,
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": ""}  # no index: pip would fail
    done = subprocess.run([sys.executable, "-m", "export", "target", "bundle", str(RUN), "--platform", "linux-x86_64",
                           "--python", PYTHON, "--out", str(tmp_path / "again")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "0 wheels downloaded" in done.stdout, done.stdout
    first = json.loads((bundle / installer.BUNDLE_JSON).read_text())
    second = json.loads((tmp_path / "again" / installer.BUNDLE_JSON).read_text())
    assert installer.env_key(first) == installer.env_key(second)  # same wheels, bit for bit: the device reuses its env


def test_a_damaged_cached_wheel_is_fetched_again(bundles: tuple[Path, BundleResult, Path], tmp_path: Path) -> None:
    _, _, cache = bundles
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    victim = next((copy / "files").glob("fastjsonschema-*.whl"))
    victim.write_bytes(victim.read_bytes()[:1000])  # a download cut mid-way
    result = make_bundle(RUN, X86, PYTHON, tmp_path / "b", cache=copy)
    assert result.downloaded > 0
    assert not list(copy.glob(".download-*"))
    document = json.loads((tmp_path / "b" / installer.BUNDLE_JSON).read_text())
    item = next(f for f in document["files"] if f["path"].startswith("wheels/fastjsonschema-"))
    assert item["size"] > 1000


def test_an_interrupted_bundle_leaves_nothing(tmp_path: Path) -> None:
    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_bundle(RUN, X86, PYTHON, tmp_path / "out", cache=tmp_path / "cache", progress=interrupt)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # its staging removed too


@pytest.mark.parametrize("copy_hook", ["tamper", "extra wheel", "no bundle.json"])
def test_the_installer_refuses_a_tampered_bundle(bundles: tuple[Path, BundleResult, Path], tmp_path: Path,
                                                 copy_hook: str) -> None:
    bundle, _, _ = bundles
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    if copy_hook == "tamper":
        target = copy / "artifacts" / "cllnn_int8.tflite"
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
        expected = "cllnn_int8.tflite does not match bundle.json"
    elif copy_hook == "extra wheel":
        shutil.copyfile(next((copy / "wheels").glob("numpy-*.whl")), copy / "wheels" / "numpy-9.9-py3-none-any.whl")
        expected = "holds files bundle.json does not list: ['wheels/numpy-9.9-py3-none-any.whl']"
    else:
        (copy / installer.BUNDLE_JSON).unlink()
        expected = "holds no bundle.json: not a complete bundle"
    done = subprocess.run([sys.executable, str(copy / "install.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == installer.EXIT_USAGE and expected in done.stderr, done.stderr
    assert not (tmp_path / "envs").exists() or not any((tmp_path / "envs").iterdir())


def test_an_aarch64_bundle_for_python_3_11_takes_litert_2(bundles: tuple[Path, BundleResult, Path],
                                                          tmp_path: Path) -> None:
    """pip alone settles on ai-edge-litert 1.4 for aarch64 unless manylinux_2_27 is among the tags."""
    make_bundle(RUN, parse_platform("linux-aarch64"), "3.11", tmp_path / "arm", cache=bundles[2])
    document = json.loads((tmp_path / "arm" / installer.BUNDLE_JSON).read_text())
    wheels = sorted(f["path"] for f in document["files"] if f["path"].startswith("wheels/"))
    assert "wheels/ai_edge_litert-2.3.0-cp311-cp311-manylinux_2_27_aarch64.whl" in wheels, wheels
    assert all("x86_64" not in w for w in wheels) and any(w.startswith("wheels/onnxruntime-1.32.0-") for w in wheels)
    assert not any(w.startswith("wheels/tflite_micro") for w in wheels)  # its wheels are x86-64 only
    assert (document["machine"], document["glibc"]) == ("aarch64", "2.28")
    if os.uname().machine != "aarch64":  # its installer refuses this machine before touching anything
        done = subprocess.run([sys.executable, str(tmp_path / "arm" / "install.py")], capture_output=True, text=True)
        assert done.returncode == 2 and "this bundle is for linux-aarch64 (aarch64)" in done.stderr, done.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--platform", "linux-armv7l", "--python", "3.11"], "install a 64-bit OS"),
    (["--platform", "armv7l", "--python", "3.11"], "install a 64-bit OS"),
    (["--platform", "windows-amd64", "--python", "3.11"], "expected one of linux-aarch64, linux-x86_64"),
    (["--platform", "linux-x86_64", "--python", "3.9"], "expected X.Y of a CPython >= 3.10"),
])
def test_bad_platforms_and_pythons_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], message: str) -> None:
    assert main(["target", "bundle", str(RUN), *argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_directory_without_artefacts_and_a_foreign_out_are_refused(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["target", "bundle", str(tmp_path), "--platform", "linux-x86_64", "--python", PYTHON,
                 "--out", str(tmp_path / "out")]) == 2
    assert "holds no artefacts" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TargetError, match="exists and is not a bundle"):
        make_bundle(RUN, X86, PYTHON, tmp_path / "mine", cache=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    with pytest.raises(TargetError, match="3.9"):
        parse_python("3.9")


def test_no_wheel_for_a_pinned_version_names_it(bundles: tuple[Path, BundleResult, Path], tmp_path: Path) -> None:
    """numpy 2.4 has no CPython 3.10 wheels: the pinned version is named, nothing is written."""
    _, _, cache = bundles
    before = sorted((cache / "files").iterdir())
    with pytest.raises(TargetError, match=r"no wheel of numpy 2\.4\.6 for linux-aarch64 / CPython 3\.10"):
        make_bundle(RUN, parse_platform("linux-aarch64"), "3.10", tmp_path / "out", cache=cache)
    assert not (tmp_path / "out").exists() and sorted((cache / "files").iterdir()) == before
    assert not list(cache.glob(".download-*"))


def test_no_network_is_said_so(bundles: tuple[Path, BundleResult, Path], tmp_path: Path) -> None:
    prefix = _no_network_prefix()
    shutil.copytree(bundles[2] / "project", tmp_path / "cache" / "cllnn-edge" / "wheels" / "project")  # no wheels
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PIP_CONFIG_FILE": os.devnull,
           "PIP_FIND_LINKS": ""}
    done = subprocess.run([*prefix, sys.executable, "-m", "export", "target", "bundle", str(RUN), "--platform",
                           "linux-aarch64", "--python", "3.11", "--out", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "cannot reach the package index" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def _envs(device: Path) -> list[str]:
    """What the device's envs/ holds, its lock files aside."""
    return sorted(p.name for p in (device / "envs").iterdir() if not p.name.endswith(".lock"))


@pytest.mark.slow
def test_the_bundle_installs_offline_and_verifies_as_the_host_does(bundles: tuple[Path, BundleResult, Path],
                                                                   tmp_path: Path) -> None:
    bundle, _, _ = bundles
    device = tmp_path / "device"
    shutil.copytree(bundle, device / "bundle")
    key = installer.env_key(json.loads((bundle / installer.BUNDLE_JSON).read_text()))
    (device / "envs" / f".{key}.partial-cut").mkdir(parents=True)  # an install cut mid-way before
    install = [*_no_network_prefix(), sys.executable, str(device / "bundle" / "install.py"), "--json"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PIP_INDEX_URL": "http://127.0.0.1:9/simple"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["installed"] and result["env"] == str(device / "envs" / key)
    assert _envs(device) == [key]  # the cut one removed
    done = subprocess.run([result["cllnn_bench"], "verify", result["artifacts"], "--json", str(tmp_path / "v.json")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: the fixture's int8 files fail by design
    on_device = {r["format"]: (r["passed"], {c["name"]: c["passed"] for c in r["checks"]})
                 for r in json.loads((tmp_path / "v.json").read_text())["results"]}
    on_host = {r.format: (r.passed, {c.name: c.passed for c in r.checks}) for r in verify(RUN / "artifacts").results}
    assert on_device == on_host and len(on_host) == 8
    assert not on_host["tflite-int8"][0] and on_host["tflite-fp32"][0]  # the fixture's verdicts, both kinds
    again = subprocess.run(install, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["installed"] is False
    assert _envs(device) == [key]


def test_a_pin_adds_or_replaces_a_device_package(bundles: tuple[Path, BundleResult, Path], tmp_path: Path) -> None:
    """The runtime a board image pins (tflite-runtime 2.14: x86-64 wheels up to CPython 3.11) comes along."""
    if PYTHON != "3.11":
        pytest.skip("tflite-runtime 2.14 has wheels for CPython <= 3.11; this is " + PYTHON)
    result = make_bundle(RUN, X86, PYTHON, tmp_path / "b", pins=["tflite-runtime==2.14.0"], cache=bundles[2])
    assert result.pins["tflite-runtime"] == "==2.14.0 (from --pin)"
    assert any(p.name.startswith("tflite_runtime-2.14.0-") for p in (tmp_path / "b" / "wheels").iterdir())
    with pytest.raises(TargetError, match=r"--pin fastjsonschema==2.21.1: cllnn-edge needs fastjsonschema>=2.22"):
        make_bundle(RUN, X86, PYTHON, tmp_path / "c", pins=["fastjsonschema==2.21.1"], cache=bundles[2])


def test_a_signed_run_brings_its_signature_and_the_library_that_checks_it(bundles: tuple[Path, BundleResult, Path],
                                                                         tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN / "artifacts", run / "artifacts")
    keys = generate_keys(tmp_path / "keys")
    sign_artifacts(run / "artifacts", keys.private)
    make_bundle(run, X86, PYTHON, tmp_path / "b", cache=bundles[2])
    bundle = tmp_path / "b"
    assert (bundle / "artifacts" / "manifest.sig").read_bytes() == (run / "artifacts" / "manifest.sig").read_bytes()
    document = json.loads((bundle / installer.BUNDLE_JSON).read_text())
    assert document["requirements"] == ["cllnn-edge[signing,tflm]"]
    assert any(f["path"].startswith("wheels/cryptography-") for f in document["files"])
