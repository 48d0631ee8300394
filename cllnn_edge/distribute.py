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

This module (names, ``TF_CONFIG``, the plan, backups) needs no TensorFlow, so the CLI checks a
cluster before any work; ``cllnn_edge.tf_distribute`` builds the strategy and the pipelines and fits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cllnn_edge.errors import ConfigError

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


