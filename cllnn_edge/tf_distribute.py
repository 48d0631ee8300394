"""The TensorFlow half of distributed training: the ``tf.distribute`` strategy of a ``Plan``, ``tf.data``
pipelines sharded by DATA, ``model.fit`` under a strategy, and a failed peer turned into a
``ClusterError`` naming it.

``cllnn_edge.distribute`` holds the half that needs no TensorFlow (strategy names, ``TF_CONFIG``, the
plan, backups), so the CLI checks a cluster before any work; this module imports TensorFlow and is
imported where a model is trained (``cllnn_edge.train``).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cllnn_edge.distribute import (
    COLLECTIVE_TIMEOUT_SECONDS,
    JOB_TYPES,
    MIRRORED,
    MULTI_WORKER,
    Plan,
    per_replica_batch,
)
from cllnn_edge.errors import ClusterError, ConfigError


def make_strategy(plan: Plan) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy of a distributed plan. Create it before any other TensorFlow
    work: multi-worker collectives are configured at start-up."""
    if plan.strategy == MIRRORED:
        return tf.distribute.MirroredStrategy()
    if plan.strategy == MULTI_WORKER:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ConfigError(f"no tf.distribute strategy for {plan.strategy!r}; one-device trains without one")


def dataset(x: np.ndarray, y: np.ndarray, global_batch: int, *, seed: int | None) -> tf.data.Dataset:
    """In-memory arrays as a ``tf.data`` pipeline batched by the global batch and sharded by DATA
    (``sharded_by_data``); ``seed`` shuffles (reshuffled each epoch), None keeps order."""
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        data = data.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return sharded_by_data(data.batch(global_batch).prefetch(tf.data.AUTOTUNE))


def sharded_by_data(pipeline: tf.data.Dataset) -> tf.data.Dataset:
    """``pipeline`` (of global batches) auto-sharded by DATA: every worker reads it all and computes
    its part of every batch, so every worker takes the same number of steps. By FILE (each worker its
    own shard files) the workers' record counts differ, and the one that runs out first fed an
    empty batch to a convolution (two workers on a 4-file shard directory failed so)."""
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
            return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

    return step_with_vector_logs


def check_same_resume_epoch(strategy: tf.distribute.Strategy, plan: Plan, epoch: int) -> None:
    """Every worker must resume from the same epoch, or their step counts (and weights) would differ:
    one collective sum gathers each task's epoch; a ``ClusterError`` lists them when they differ."""
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
