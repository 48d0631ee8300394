"""Training on several replicas or machines with ``tf.distribute``: which strategy, which worker.

The cluster is described the way Kubernetes' TFJob, Vertex AI and SageMaker describe it:
the ``TF_CONFIG`` environment variable of each worker, e.g.::

    {"cluster": {"worker": ["host-a:12345", "host-b:12345"]}, "task": {"type": "worker", "index": 0}}

Strategy names: ``one-device`` (today's path: ``model.fit`` on in-memory arrays),
``mirrored`` (every local device of this machine), ``multi-worker``
(``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster) and ``auto``
(multi-worker when ``TF_CONFIG`` names more than one task, else one-device).

The distributed strategies read a ``tf.data`` pipeline batched by the GLOBAL batch
(``train.batch_size``), auto-sharded by DATA so each worker computes its part of every
batch; the learning rate is the configured one, since the global batch does not change
with the number of replicas. A dead peer fails the run with ``ClusterError`` naming the
worker; ``COLLECTIVE_TIMEOUT_SECONDS`` bounds any wait on a peer.

Parsing and naming need no TensorFlow (the CLI checks ``TF_CONFIG`` before any work);
TensorFlow is imported only where a strategy or a dataset is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cllnn_edge.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    import keras
    import numpy as np
    import tensorflow as tf

AUTO, ONE_DEVICE, MIRRORED, MULTI_WORKER = "auto", "one-device", "mirrored", "multi-worker"
STRATEGIES = (AUTO, ONE_DEVICE, MIRRORED, MULTI_WORKER)
# The longest any collective (a gradient all-reduce, a metric sum) waits for a peer before the
# run fails with DeadlineExceeded. A killed peer is usually found sooner, by TensorFlow's
# heartbeats (about 15 s on localhost); this bounds the cases heartbeats do not see (a hung peer).
COLLECTIVE_TIMEOUT_SECONDS = 120.0
JOB_TYPES = ("chief", "worker")  # what MultiWorkerMirroredStrategy trains with; no ps, no evaluator
BACKUP_DIR = "backup"  # under the chief's output directory: BackupAndRestore's files
_ADDRESS = re.compile(r"^[^\s:/]+:(\d{1,5})$")  # host:port


@dataclass(frozen=True)
class Cluster:
    """A parsed, checked ``TF_CONFIG``: every job's addresses and which task this process is."""

    jobs: Mapping[str, tuple[str, ...]]
    task_type: str
    task_index: int

    @property
    def size(self) -> int:
        """Number of tasks (processes) in the cluster."""
        return sum(len(addresses) for addresses in self.jobs.values())

    @property
    def is_chief(self) -> bool:
        """The chief writes the results: task "chief", or worker 0 when there is no chief job."""
        if "chief" in self.jobs:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    def name_of(self, task_type: str, index: int) -> str:
        """How a message names a task: "worker 1 (host-b:12345)"."""
        addresses = self.jobs.get(task_type, ())
        address = addresses[index] if 0 <= index < len(addresses) else "address unknown"
        return f"{task_type} {index} ({address})"

    @property
    def this_task(self) -> str:
        return self.name_of(self.task_type, self.task_index)


def parse_tf_config(text: str) -> Cluster:
    """``TF_CONFIG`` text -> ``Cluster``; a ``ConfigError`` names what is wrong and what was expected."""
    where = "TF_CONFIG"
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc.msg} at character {exc.pos}): {text[:200]!r}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{where} must be a JSON object with 'cluster' and 'task', got {type(config).__name__}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError(f"{where}: 'cluster' must be an object mapping a job ('chief', 'worker') to a list of "
                          f"'host:port' addresses, got {cluster!r}")
    jobs: dict[str, tuple[str, ...]] = {}
    for job, addresses in cluster.items():
        if job not in JOB_TYPES:
            raise ConfigError(f"{where}: job {job!r} is not supported; multi-worker training takes jobs "
                              f"{list(JOB_TYPES)} (no parameter servers or evaluators)")
        if not isinstance(addresses, list) or not addresses:
            raise ConfigError(f"{where}: cluster.{job} must be a non-empty list of 'host:port', got {addresses!r}")
        for address in addresses:
            match = _ADDRESS.match(address) if isinstance(address, str) else None
            if match is None or not 0 < int(match.group(1)) < 65536:
                raise ConfigError(f"{where}: cluster.{job} holds {address!r}; expected 'host:port' with a port "
                                  f"in 1..65535")
        jobs[job] = tuple(addresses)
    if len(jobs.get("chief", ())) > 1:
        raise ConfigError(f"{where}: cluster.chief may hold one address, got {len(jobs['chief'])}")
    everywhere = [a for addresses in jobs.values() for a in addresses]
    duplicates = sorted({a for a in everywhere if everywhere.count(a) > 1})
    if duplicates:
        raise ConfigError(f"{where}: each task needs its own address; {duplicates} appear more than once")
    if not isinstance(task, dict):
        raise ConfigError(f"{where}: 'task' must be an object like {{\"type\": \"worker\", \"index\": 0}}, "
                          f"got {task!r}")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in jobs:
        raise ConfigError(f"{where}: task.type is {task_type!r}; expected one of the cluster's jobs {sorted(jobs)}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(jobs[task_type]):
        raise ConfigError(f"{where}: task.index is {index!r}; cluster.{task_type} has {len(jobs[task_type])} "
                          f"address(es), so expected an integer in 0..{len(jobs[task_type]) - 1}")
    return Cluster(jobs=jobs, task_type=task_type, task_index=index)


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster ``TF_CONFIG`` describes, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    return parse_tf_config(text) if text else None


@dataclass(frozen=True)
class Plan:
    """How this process trains: the resolved strategy name and, for multi-worker, its cluster."""

    strategy: str  # one of ONE_DEVICE, MIRRORED, MULTI_WORKER (never AUTO)
    cluster: Cluster | None

    @property
    def distributed(self) -> bool:
        return self.strategy != ONE_DEVICE

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the results (always, except a non-chief multi-worker task)."""
        return self.strategy != MULTI_WORKER or self.cluster is None or self.cluster.is_chief

    @property
    def worker_name(self) -> str:
        """This process in messages: "worker 1 (host-b:12345)", or "this process" outside a cluster."""
        return self.cluster.this_task if self.strategy == MULTI_WORKER and self.cluster else "this process"

    def backup_dir(self, out_dir: Path) -> Path:
        """Where BackupAndRestore keeps this process's state: ``<out>/backup`` for the chief; for another
        worker a directory under the system temp dir, named from its output directory and task, so a
        re-run of the same command finds it (and the output directory stays untouched)."""
        if self.is_chief:
            return out_dir / BACKUP_DIR
        assert self.cluster is not None
        key = f"{out_dir.resolve()}|{self.cluster.task_type}|{self.cluster.task_index}"
        return Path(tempfile.gettempdir()) / f"cllnn-backup-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def plan(name: str, environ: Mapping[str, str] | None = None) -> Plan:
    """Resolve a strategy name against ``TF_CONFIG``; bad names and bad ``TF_CONFIG`` fail here, before any work."""
    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {list(STRATEGIES)}, got {name!r}")
    cluster = cluster_from_env(environ)
    if name == AUTO:
        name = MULTI_WORKER if cluster is not None and cluster.size > 1 else ONE_DEVICE
    return Plan(strategy=name, cluster=cluster if name == MULTI_WORKER else None)


def per_replica_batch(global_batch: int, replicas: int) -> int:
    """The batch each replica computes; the global batch must split evenly, so every step is the same size."""
    if replicas < 1 or global_batch % replicas:
        raise ConfigError(f"train.batch_size {global_batch} (the global batch) must be a multiple of the "
                          f"{replicas} replicas in sync, so each replica takes an equal part")
    return global_batch // replicas


def make_strategy(plan: Plan) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy of a distributed plan. Create it before any other TensorFlow
    work: multi-worker collectives are configured at start-up."""
    import tensorflow as tf

    if plan.strategy == MIRRORED:
        return tf.distribute.MirroredStrategy()
    if plan.strategy == MULTI_WORKER:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ConfigError(f"no tf.distribute strategy for {plan.strategy!r}; one-device trains without one")


def dataset(x: np.ndarray, y: np.ndarray, global_batch: int, *, seed: int | None) -> tf.data.Dataset:
    """In-memory arrays as a ``tf.data`` pipeline batched by the global batch and sharded by DATA
    (``sharded_by_data``); ``seed`` shuffles (reshuffled each epoch), None keeps order."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        data = data.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return sharded_by_data(data.batch(global_batch).prefetch(tf.data.AUTOTUNE))


def sharded_by_data(pipeline: tf.data.Dataset) -> tf.data.Dataset:
    """``pipeline`` (of global batches) auto-sharded by DATA: every worker reads it all and computes
    its part of every batch, so every worker takes the same number of steps. By FILE (each worker its
    own shard files) the workers' record counts differ, and the one that runs out first fed an
    empty batch to a convolution (two workers on a 4-file shard directory failed so)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return pipeline.with_options(options)


def fit_pipelines(
    model: keras.Model,
    strategy: tf.distribute.Strategy | None,
    plan: Plan,
    pipelines: Sequence[tf.data.Dataset],
    *,
    batch: int,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    verbose: int | str,
    resumed: int,
) -> tuple[float, float, float]:
    """``model.fit`` on the train pipeline and ``evaluate`` on the test one (``pipelines``: train, val,
    test), under ``strategy`` if there is one; every worker calls it. A failed peer becomes a
    ``ClusterError`` naming it. Returns train seconds, test loss and test accuracy."""
    import tensorflow as tf

    train, val, test = pipelines
    started = time.perf_counter()
    try:
        if strategy is not None:
            per_replica_batch(batch, strategy.num_replicas_in_sync)  # the global batch splits evenly
            check_same_resume_epoch(strategy, plan, resumed)
        with fitting(model, strategy) if strategy is not None else contextlib.nullcontext():
            model.fit(train, epochs=epochs, shuffle=False,  # the pipeline shuffles itself, with the seed
                      validation_data=val, callbacks=callbacks, verbose=verbose)
            seconds = time.perf_counter() - started
            loss, accuracy = model.evaluate(test, verbose=0)
    except tf.errors.OpError as exc:
        error = cluster_error(exc, plan)
        if error is None:
            raise
        raise error from exc
    return seconds, float(loss), float(accuracy)


@contextlib.contextmanager
def fitting(model: keras.Model, strategy: tf.distribute.Strategy) -> Iterator[None]:
    """Run ``model.fit`` / ``evaluate`` inside this block. Keras 3.15 cannot fit under
    MultiWorkerMirroredStrategy as it stands (keras-team/keras#20585): its pre-fit symbolic build
    reduces the input tuple with ``strategy.reduce`` (which that strategy does not nest), and each step
    reduces its scalar logs with ``axis=0``. So, for the block: the model forgets its creation-time
    strategy (its variables keep it, and ``strategy.scope()`` supplies it to fit) and its train / test
    steps return each log as a 1-element vector (reduced to the same scalar; every replica holds the
    same synchronised metric values). Both are undone on exit; the two-worker test checks it all.
    Other strategies (mirrored) need neither and get none."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        with strategy.scope():
            yield
        return
    saved = model._distribute_strategy  # noqa: SLF001 - the workaround above
    model._distribute_strategy = None  # noqa: SLF001
    train_step, test_step = model.train_step, model.test_step
    model.train_step, model.test_step = _logs_as_vectors(train_step), _logs_as_vectors(test_step)
    try:
        with strategy.scope():
            yield
    finally:
        for attribute in ("train_step", "test_step"):
            model.__dict__.pop(attribute, None)  # back to the class's methods
        model._distribute_strategy = saved  # noqa: SLF001


def _logs_as_vectors(step: Any) -> Any:
    def step_with_vector_logs(data: Any) -> dict[str, Any]:
        import tensorflow as tf

        return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

    return step_with_vector_logs


def resume_epoch(backup_dir: Path, identity: Mapping[str, Any]) -> int:
    """The epoch a BackupAndRestore backup resumes from (Keras writes ``training_metadata.json`` beside
    the weights after each epoch); 0 when there is none. A backup of another run (``identity``: config,
    data, strategy) is discarded rather than restored into a model it does not fit; this run's identity
    is then recorded in the backup directory."""
    stamp = backup_dir / "run.json"
    wanted = json.dumps(identity, sort_keys=True, default=str)
    try:
        recorded = stamp.read_text()
        epoch = int(json.loads((backup_dir / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        recorded, epoch = None, 0
    if recorded != wanted:
        shutil.rmtree(backup_dir, ignore_errors=True)
        epoch = 0
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(wanted)
    return epoch


def adopt_shared_backup(plan: Plan, out_dir: Path) -> None:
    """A non-chief worker whose own backup is gone (a restarted container loses its temp dir) but whose
    ``--out`` is the chief's, on a shared volume, starts from a copy of the chief's backup (it reads the
    output directory, never writes it), so both resume from the same epoch."""
    own, chiefs = plan.backup_dir(out_dir), out_dir / BACKUP_DIR
    if plan.is_chief or (own / "training_metadata.json").exists():
        return
    if (chiefs / "training_metadata.json").exists():
        shutil.rmtree(own, ignore_errors=True)
        shutil.copytree(chiefs, own)


def check_same_resume_epoch(strategy: tf.distribute.Strategy, plan: Plan, epoch: int) -> None:
    """Every worker must resume from the same epoch, or their step counts (and weights) would differ:
    one collective sum gathers each task's epoch; a ``ClusterError`` lists them when they differ."""
    import tensorflow as tf

    cluster = plan.cluster
    if plan.strategy != MULTI_WORKER or cluster is None or cluster.size < 2:
        return
    tasks = [(job, i) for job in JOB_TYPES for i in range(len(cluster.jobs.get(job, ())))]
    mine = [0.0] * len(tasks)
    mine[tasks.index((cluster.task_type, cluster.task_index))] = float(epoch + 1)  # 0: no report
    summed = strategy.reduce(tf.distribute.ReduceOp.SUM, tf.constant(mine), axis=None).numpy()
    per_worker = strategy.num_replicas_in_sync // cluster.size or 1  # the sum counts each local replica
    epochs = [round(value / per_worker) - 1 for value in summed]
    if len(set(epochs)) > 1:
        listed = ", ".join(f"{cluster.name_of(*task)} from epoch {e}" for task, e in zip(tasks, epochs))
        raise ClusterError(f"{plan.worker_name}: the workers would resume from different epochs ({listed}): a "
                           f"worker lost its backup (a non-chief worker keeps it in the system temp directory) or "
                           f"stopped between two backups. Delete every worker's backup to start over")


_PEER = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")
_PEER_FAILURES = ("Collective ops is aborted", "unhealthy", "is down", "Socket closed", "Connection reset",
                  "failed to connect", "heartbeat")


def cluster_error(exc: BaseException, plan: Plan) -> ClusterError | None:
    """A ``ClusterError`` naming the failed peer when ``exc`` is TensorFlow reporting one (UnavailableError,
    DeadlineExceeded, aborted collectives), else None: other errors are not the cluster's."""
    import tensorflow as tf

    if plan.strategy != MULTI_WORKER:
        return None
    message = str(exc)
    timed_out = isinstance(exc, tf.errors.DeadlineExceededError)
    if not (timed_out or isinstance(exc, (tf.errors.UnavailableError, tf.errors.AbortedError))
            or any(hint in message for hint in _PEER_FAILURES)):
        return None
    cluster = plan.cluster
    me = plan.worker_name
    peers = [(job, int(index)) for job, index in _PEER.findall(message)]
    if cluster is not None:
        peers = [p for p in peers if p != (cluster.task_type, cluster.task_index)] or peers
    said = _gist(message)
    if peers and cluster is not None:
        who = cluster.name_of(*peers[0])
        what = (f"{who} did not answer within {COLLECTIVE_TIMEOUT_SECONDS:.0f} s" if timed_out
                else f"{who} stopped (it crashed, was killed or lost the network)")
    elif timed_out:
        what = f"a peer did not answer within {COLLECTIVE_TIMEOUT_SECONDS:.0f} s"
    else:
        what = "a peer stopped"
    return ClusterError(f"{me}: training failed: {what}; TensorFlow: {type(exc).__name__}: {said}. Restart "
                        f"every worker with the same command: training resumes from the last completed epoch")


def _gist(message: str) -> str:
    """The lines of a TensorFlow error that say what happened (its graph tracebacks left out)."""
    lines = [" ".join(re.sub(r"\{\{[^}]*\}\}", "", line).split()) for line in message.splitlines()]
    lines = [line for line in lines if line]
    told = [line for line in lines if any(hint in line for hint in (*_PEER_FAILURES, "peer", "task:"))]
    return " ".join(told or lines[-1:])[:400] or "(no message)"
