"""cllnn_edge.distribute: TF_CONFIG checks (fast) and real multi-worker training in separate processes (slow).

The multi-process tests start ``python -m export train`` twice on localhost, each with its own
``TF_CONFIG``, on the embedded digits and a small model, and bound every wait with a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cllnn_edge.distribute import (
    COLLECTIVE_TIMEOUT_SECONDS,
    MULTI_WORKER,
    ONE_DEVICE,
    STRATEGIES,
    Plan,
    parse_tf_config,
    per_replica_batch,
    plan,
    resume_epoch,
)
from cllnn_edge.errors import ClusterError, ConfigError
from cllnn_edge.tf_distribute import cluster_error

ROOT = Path(__file__).resolve().parents[2]
TWO = {"cluster": {"worker": ["localhost:2222", "localhost:2223"]}, "task": {"type": "worker", "index": 1}}
# A small model, so one epoch of two workers on two cores takes seconds, not minutes.
TINY = '[model]\nreservoir_dim = 64\nlstm_units = 16\nconv_filters = [8, 16, 32]\n'
PROCESS_TIMEOUT = 150  # seconds any one training process may take before the test kills it and fails


def tf_config(**changes: object) -> str:
    return json.dumps({**TWO, **changes})


@pytest.mark.parametrize(("text", "names"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({"task": TWO["task"]}), "'cluster' must be an object"),
    (tf_config(cluster={"worker": ["localhost:1"], "ps": ["localhost:2"]}), "job 'ps' is not supported"),
    (tf_config(cluster={"worker": []}), "non-empty list"),
    (tf_config(cluster={"worker": ["localhost"]}), "holds 'localhost'; expected 'host:port'"),
    (tf_config(cluster={"worker": ["localhost:0"]}), "port in 1..65535"),
    (tf_config(cluster={"worker": ["localhost:70000"]}), "port in 1..65535"),
    (tf_config(cluster={"worker": ["a:1", "a:1"]}), "['a:1'] appear more than once"),
    (tf_config(cluster={"chief": ["a:1", "b:1"], "worker": ["c:1"]}), "cluster.chief may hold one address"),
    (tf_config(task=None), "'task' must be an object"),
    (tf_config(task={"type": "chief", "index": 0}), "task.type is 'chief'; expected one of"),
    (tf_config(task={"type": "worker", "index": 2}), "has 2 address(es), so expected an integer in 0..1"),
    (tf_config(task={"type": "worker", "index": True}), "task.index is True"),
    (tf_config(task={"type": "worker"}), "task.index is None"),
])
def test_bad_tf_config_is_a_config_error_naming_the_problem(text: str, names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tf_config(text)
    assert names in str(caught.value)
    assert str(caught.value).startswith("TF_CONFIG")


def test_chief_worker_names_and_auto() -> None:
    cluster = parse_tf_config(tf_config())
    assert (cluster.size, cluster.is_chief, cluster.this_task) == (2, False, "worker 1 (localhost:2223)")
    assert parse_tf_config(tf_config(task={"type": "worker", "index": 0})).is_chief
    with_chief = parse_tf_config(json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w:1"]},
                                             "task": {"type": "worker", "index": 0}}))
    assert not with_chief.is_chief  # with a chief job, worker 0 is an ordinary worker
    assert plan("auto", {"TF_CONFIG": tf_config()}).strategy == MULTI_WORKER
    one = json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}})
    assert plan("auto", {"TF_CONFIG": one}).strategy == ONE_DEVICE  # a cluster of one is one device
    assert plan("auto", {}) == Plan(ONE_DEVICE, None)
    assert plan("multi-worker", {}).is_chief  # without TF_CONFIG: a single worker, which writes
    assert not plan("multi-worker", {"TF_CONFIG": tf_config()}).is_chief
    with pytest.raises(ConfigError, match="strategy must be one of .* got 'gpu'"):
        plan("gpu", {})


def test_backup_dirs_chief_in_out_others_outside_and_stable(tmp_path: Path) -> None:
    chief = plan("multi-worker", {"TF_CONFIG": tf_config(task={"type": "worker", "index": 0})})
    other = plan("multi-worker", {"TF_CONFIG": tf_config()})
    assert chief.backup_dir(tmp_path) == tmp_path / "backup"
    assert tmp_path not in other.backup_dir(tmp_path).parents
    assert other.backup_dir(tmp_path) == other.backup_dir(tmp_path / ".." / tmp_path.name)  # a re-run finds it
    assert other.backup_dir(tmp_path) != other.backup_dir(tmp_path / "elsewhere")


def test_per_replica_batch() -> None:
    assert per_replica_batch(64, 2) == 32
    with pytest.raises(ConfigError, match="batch_size 64 .* multiple of the 3 replicas"):
        per_replica_batch(64, 3)


def test_resume_epoch_reads_a_backup_of_the_same_run_and_discards_another(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    assert resume_epoch(backup, {"config": 1}) == 0  # nothing to resume; the run is recorded
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": 3, "batch": 0}))
    assert resume_epoch(backup, {"config": 1}) == 3
    assert resume_epoch(backup, {"config": 2}) == 0  # another config: its weights would not fit
    assert not (backup / "training_metadata.json").exists()


def test_tensorflow_peer_errors_become_cluster_errors_naming_the_worker() -> None:
    import tensorflow as tf

    how = plan("multi-worker", {"TF_CONFIG": tf_config(task={"type": "worker", "index": 0})})
    dead = tf.errors.UnavailableError(None, None, "Collective ops is aborted by: Error reported from "
                                      "/job:worker/task:1: The following tasks are unhealthy (stopped sending "
                                      "heartbeats):\n/job:worker/replica:0/task:1\n")
    error = cluster_error(dead, how)
    assert isinstance(error, ClusterError)
    assert str(error).startswith("worker 0 (localhost:2222): training failed: worker 1 (localhost:2223) stopped")
    late = cluster_error(tf.errors.DeadlineExceededError(None, None, "Collective timed out"), how)
    assert f"within {COLLECTIVE_TIMEOUT_SECONDS:.0f} s" in str(late)
    assert cluster_error(tf.errors.InvalidArgumentError(None, None, "bad shape"), how) is None
    assert cluster_error(dead, plan("one-device", {})) is None


def test_cli_rejects_a_bad_strategy_name_with_exit_2(tmp_path: Path) -> None:
    bad_name = _cli("run", "--out", str(tmp_path / "out"), "--strategy", "gpu")
    assert bad_name.returncode == 2
    assert "error: strategy must be one of ['auto', 'one-device', 'mirrored', 'multi-worker'], got 'gpu'" \
        in bad_name.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "run"])
def test_cli_help_names_every_strategy(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from export.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "--strategy {" + ",".join(STRATEGIES) + "}" in " ".join(capsys.readouterr().out.split())


def test_cli_rejects_a_bad_tf_config_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad_config = _cli("train", "--out", str(out), env={"TF_CONFIG": tf_config(task={"type": "ps", "index": 0})})
    assert bad_config.returncode == 2
    assert "TF_CONFIG: task.type is 'ps'; expected one of the cluster's jobs ['worker']" in bad_config.stderr
    assert not out.exists()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "export", *args], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT, cwd=ROOT, env=_env(env or {}))


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Workers:
    """Two ``cllnn-export train`` processes on localhost, worker i writing to ``outs[i]``, output to a log."""

    def __init__(self, tmp: Path, ports: list[int], epochs: int, tag: str, data: str = "embedded") -> None:
        self.outs = [tmp / f"out{i}" for i in range(2)]
        self.logs = [tmp / f"{tag}{i}.log" for i in range(2)]
        cluster = {"worker": [f"localhost:{p}" for p in ports]}
        self.procs = []
        for i in range(2):
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            with self.logs[i].open("w") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "export", "train", "--data", data, "--epochs", str(epochs),
                     "--config", str(tmp / "tiny.toml"), "--out", str(self.outs[i]), "--strategy", "multi-worker"],
                    cwd=ROOT, env=_env({"TF_CONFIG": config}), stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))

    def text(self, i: int) -> str:
        return self.logs[i].read_text()

    def wait(self, i: int, timeout: float) -> int:
        return self.procs[i].wait(timeout=timeout)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _history(out: Path) -> dict:
    return json.loads((out / "history.json").read_text())


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_only_the_chief_writes(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    single = _cli("train", "--data", "embedded", "--epochs", "1", "--config", str(tmp_path / "tiny.toml"),
                  "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-2000:]
    # The same tf.data pipeline in one process (MultiWorkerMirroredStrategy without TF_CONFIG: one worker).
    pipeline = _cli("train", "--data", "embedded", "--epochs", "1", "--config", str(tmp_path / "tiny.toml"),
                    "--out", str(tmp_path / "pipeline"), "--strategy", "multi-worker")
    assert pipeline.returncode == 0, pipeline.stderr[-2000:]
    workers = Workers(tmp_path, _free_ports(2), epochs=1, tag="train")
    try:
        codes = [workers.wait(i, PROCESS_TIMEOUT) for i in range(2)]
    finally:
        workers.kill_all()
    assert codes == [0, 0], workers.text(0)[-2000:] + workers.text(1)[-2000:]
    chief, other = workers.outs
    assert sorted(p.name for p in chief.iterdir()) == ["history.json", "model.keras", "preprocessing.json"]
    assert not other.exists()  # the non-chief wrote nothing, not even the directory
    assert "worker 1 (localhost:" in workers.text(1) and "the chief writes the files" in workers.text(1)
    two, one = _history(chief), _history(tmp_path / "single")
    assert two["distribution"] == {"strategy": "multi-worker", "replicas": 2, "global_batch": 64,
                                   "per_replica_batch": 32, "learning_rate": 1e-3}
    assert two["timing"]["steps_per_epoch"] == one["timing"]["steps_per_epoch"]  # the same global batch
    # Every replica reports the same synchronised metrics: the workers' epoch lines agree.
    lines = [[line.split("  lr")[0] for line in workers.text(i).splitlines() if line.startswith("epoch 1/1")]
             for i in range(2)]
    assert lines[0] == lines[1] and len(lines[0]) == 1
    # Within noise: the runs differ in the order the 3,600 images are drawn (tf.data's shuffle against
    # Keras') and in summation order. Validation accuracy on 400 images after one epoch (about 0.5 for this
    # model; chance is 0.1) has a binomial standard error of 0.025 per run, 0.035 for a difference, and
    # one-process runs with model seeds 0..3 gave 0.4675, 0.495, 0.535, 0.5425 (a spread of 0.075). 0.10 is
    # about three standard deviations of the difference and above that spread; measured gap: 0.0075.
    # A broken distribution (half the data, unsynchronised weights) lands outside it or near chance.
    gap = abs(two["final"]["val_accuracy"] - one["final"]["val_accuracy"])
    print(f"val accuracy: two workers {two['final']['val_accuracy']:.4f}, one process "
          f"{one['final']['val_accuracy']:.4f}")
    assert gap <= 0.10, (two["final"], one["final"])
    assert two["final"]["val_accuracy"] > 0.3  # it learned
    # Against one worker reading the same pipeline the two workers see the same global batches in the same
    # order (each computes half of every batch): only the order of float sums in the all-reduce differs,
    # so after 57 steps the validation loss agrees to ~1e-5 (measured 3.5e-5); 1e-3 and 2 of 400 images.
    same = _history(tmp_path / "pipeline")["final"]
    val_loss = (two["epochs"]["val_loss"][-1], _history(tmp_path / "pipeline")["epochs"]["val_loss"][-1])
    assert abs(val_loss[0] - val_loss[1]) < 1e-3, val_loss
    assert abs(two["final"]["val_accuracy"] - same["val_accuracy"]) <= 2 / 400, (two["final"], same)


@pytest.mark.slow
def test_a_killed_worker_fails_the_run_naming_it_and_a_rerun_resumes(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    ports = _free_ports(2)
    workers = Workers(tmp_path, ports, epochs=3, tag="first")
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while "epoch 1/3" not in workers.text(1):
            assert time.monotonic() < deadline and workers.procs[1].poll() is None, workers.text(1)[-2000:]
            time.sleep(0.2)
        os.killpg(workers.procs[1].pid, signal.SIGKILL)
        killed = time.monotonic()
        code = workers.wait(0, COLLECTIVE_TIMEOUT_SECONDS + 30)
        noticed = time.monotonic() - killed
    finally:
        workers.kill_all()
    assert code == 1, workers.text(0)[-2000:]
    assert noticed < COLLECTIVE_TIMEOUT_SECONDS
    message = next((line for line in workers.text(0).splitlines() if line.startswith("cllnn-export train:")), "")
    assert message.startswith(f"cllnn-export train: FAILED: worker 0 (localhost:{ports[0]}): training failed: "
                              f"worker 1 (localhost:{ports[1]}) stopped"), message
    assert not (workers.outs[0] / "model.keras").exists()
    print(f"the chief failed {noticed:.1f} s after worker 1 was killed")

    # A worker that lost its backup (a restarted container's temp dir) must not train from other weights:
    # both fail before training, listing each worker's epoch. With the backup back, they resume.
    lost = plan("multi-worker", {"TF_CONFIG": tf_config()}).backup_dir(workers.outs[1])
    kept = shutil.copytree(lost, tmp_path / "kept")
    shutil.rmtree(lost)
    apart = Workers(tmp_path, ports, epochs=3, tag="apart")
    try:
        codes = [apart.wait(i, PROCESS_TIMEOUT) for i in range(2)]
    finally:
        apart.kill_all()
    assert codes == [1, 1], apart.text(0)[-2000:]
    assert (f"the workers would resume from different epochs (worker 0 (localhost:{ports[0]}) from epoch 1, "
            f"worker 1 (localhost:{ports[1]}) from epoch 0)") in apart.text(0)
    shutil.rmtree(lost)
    shutil.copytree(kept, lost)

    again = Workers(tmp_path, ports, epochs=3, tag="again")
    try:
        codes = [again.wait(i, PROCESS_TIMEOUT) for i in range(2)]
    finally:
        again.kill_all()
    assert codes == [0, 0], again.text(0)[-2000:] + again.text(1)[-2000:]
    for i in range(2):
        assert f"worker {i} (localhost:{ports[i]}): resuming from epoch 1" in again.text(i)
        assert "epoch 1/3" not in again.text(i) and "epoch 3/3" in again.text(i)
    history = _history(again.outs[0])
    assert len(history["epochs"]["val_accuracy"]) == 3  # the epoch before the failure and the two after
    assert sorted(p.name for p in again.outs[0].iterdir()) == ["history.json", "model.keras", "preprocessing.json"]
    assert not again.outs[1].exists()
    assert not plan("multi-worker", {"TF_CONFIG": tf_config()}).backup_dir(again.outs[1]).exists()


@pytest.mark.slow
def test_two_workers_train_from_a_shard_directory_of_uneven_files(tmp_path: Path) -> None:
    """Four training shards between two workers: each worker reads every shard and keeps its part of each
    batch (DATA). Sharded by FILE, a worker ran out of records first and failed on an empty batch."""
    from cllnn_edge.data import load_splits
    from cllnn_edge.shard_writer import write_shards

    shards = write_shards(load_splits("embedded"), tmp_path / "shards", per_shard=1000)
    assert len(list(shards.glob("train-*"))) == 4  # 3,600 records: 1,000 + 1,000 + 1,000 + 600
    (tmp_path / "tiny.toml").write_text(TINY)
    workers = Workers(tmp_path, _free_ports(2), epochs=1, tag="shards", data=str(shards))
    try:
        codes = [workers.wait(i, PROCESS_TIMEOUT) for i in range(2)]
    finally:
        workers.kill_all()
    assert codes == [0, 0], workers.text(0)[-2000:] + workers.text(1)[-2000:]
    history = _history(workers.outs[0])
    assert history["data"]["source"] == str(shards) and history["distribution"]["replicas"] == 2
    assert history["final"]["val_accuracy"] > 0.3  # it learned
