"""The Ray Train worker scaffold shared by pretraining and fine-tuning (jobs and sweep trials).

* :class:`ScaleOptions` / :class:`RunOptions`: the typed config sections every training job has
  (workers, GPU, AMP, SyncBN, compile; run name, storage, checkpoints kept, failures allowed,
  MLflow);
* :func:`make_trainer`: a ``TorchTrainer`` with ``ScalingConfig`` (GPU decided at run time),
  ``RunConfig(storage_path, name)`` (re-running a name resumes it), ``CheckpointConfig``
  (keep the N best by a score) and ``FailureConfig(max_failures)``;
* :func:`report_epoch`: every rank reports its metrics, rank 0 attaches the checkpoint;
* :class:`EpochPrinter`: the one live line per epoch, printed by the Train controller;
* :data:`EpochHook` / :func:`run_hooks`: callables a caller hands to the worker loop, called
  at the start of every epoch on every rank (tests inject a worker crash this way).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echoseek.errors import ConfigError
from echoseek.training import epoch_line, eta_seconds, save_state, unwrap_model

EpochHook = Callable[[int, int, int], None]  # (epoch, rank, world_size) -> None


@dataclass
class ScaleOptions:
    """How the job scales: Ray Train workers and what each one uses."""

    num_workers: int = 2
    use_gpu: bool | None = None  # None: GPUs when the cluster has them
    cpus_per_worker: float = 0.5  # fractional on a laptop so Ray Data tasks still schedule
    data_cpus: float = 0.5  # CPUs per Ray Data decode/augment task
    data_tasks: int = 0  # most decode/augment tasks at once; 0: see data_task_limit
    sync_bn: bool = False  # convert BatchNorm to SyncBatchNorm across workers
    amp: bool = True  # bf16 where supported, else fp16 + GradScaler; always off on CPU
    compile: bool = False  # torch.compile the model
    channels_last: bool = True  # on GPU only
    torch_threads: int = 0  # intra-op threads per worker; 0: node CPUs / workers on the node
    resources: dict[str, float] = field(default_factory=dict)  # more per worker, e.g. a node type

    def __post_init__(self) -> None:
        if any(name in ("CPU", "GPU") or amount <= 0 for name, amount in self.resources.items()):
            raise ConfigError(
                f"scale.resources: custom resources with positive amounts only (CPU and GPU "
                f"have their own keys), got {self.resources}"
            )
        if self.num_workers < 1:
            raise ConfigError(f"scale.num_workers: must be >= 1, got {self.num_workers}")
        if self.cpus_per_worker <= 0 or self.data_cpus <= 0:
            raise ConfigError("scale.cpus_per_worker and scale.data_cpus must be positive")
        if self.data_tasks < 0:
            raise ConfigError(f"scale.data_tasks: must be >= 0, got {self.data_tasks}")


@dataclass
class RunOptions:
    """Where the run lives, what is kept, how failures are handled, where it is tracked."""

    name: str = ""  # Ray Train run name; re-running the same name resumes it
    storage_path: str = "work/ray_results"  # local dir or a pyarrow/fsspec URI (s3://...)
    keep: int = 2  # checkpoints kept (the best by the job's score)
    max_failures: int = 1  # worker crashes restarted from the last checkpoint
    tracking_uri: str = ""  # MLflow; default $MLFLOW_TRACKING_URI or the local mlflow/ store
    experiment: str = "echoseek"
    register: str = ""  # register the final model under this name

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ConfigError(f"run.keep: must be >= 1, got {self.keep}")
        if self.max_failures < 0:
            raise ConfigError(f"run.max_failures: must be >= 0, got {self.max_failures}")


def storage_uri(path: str) -> str:
    """Absolute local paths (Ray Train wants them) or a URI passed through."""
    return path if "://" in path else str(Path(path).resolve())


def absolute(path: str) -> str:
    """A local path made absolute on the driver (Train workers run in another directory);
    empty strings and URIs (``s3://``, ``models:/``, ``runs:/``) pass through."""
    return path if not path or ":/" in path else str(Path(path).resolve())


def cluster_has_gpus() -> bool:
    """True when the connected Ray cluster advertises GPUs."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) > 0


def make_trainer(
    loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    *,
    scale: ScaleOptions,
    run: RunOptions,
    datasets: Mapping[str, Any],
    split: list[str],
    score: str,
    mode: str,
    callbacks: list[Any] | None = None,
) -> Any:
    """A ``TorchTrainer`` for ``loop`` with the job's scaling, storage and failure policy."""
    from ray.train import (
        CheckpointConfig,
        DataConfig,
        FailureConfig,
        LoggingConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchTrainer

    use_gpu = cluster_has_gpus() if scale.use_gpu is None else scale.use_gpu
    resources = {"CPU": scale.cpus_per_worker, **({"GPU": 1} if use_gpu else {}), **scale.resources}
    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=scale.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(  # type: ignore[call-arg]  # Train V2 RunConfig
            name=run.name,
            storage_path=storage_uri(run.storage_path),
            checkpoint_config=CheckpointConfig(
                num_to_keep=run.keep, checkpoint_score_attribute=score, checkpoint_score_order=mode
            ),
            failure_config=FailureConfig(max_failures=run.max_failures),
            callbacks=callbacks or [],
            logging_config=LoggingConfig(log_level="WARNING"),  # our epoch line says enough
        ),
        datasets=dict(datasets),
        dataset_config=DataConfig(datasets_to_split=split),
    )


def data_task_limit(scale: ScaleOptions, cluster_cpus: float) -> int:
    """How many decode/augment tasks a job's Ray Data stream runs at once.

    ``scale.data_tasks`` when set, else the cluster's CPUs left after the Train workers'
    reservations, at least 1: ``max(1, floor(cpus - num_workers x cpus_per_worker))``.
    Uncapped, Ray Data starts a task (a worker process that imports torch) per fraction of a
    CPU; on a 2-core laptop the imports alone starve the step (3 passes over 480 frames:
    46.6 s uncapped, 15.9 s with 1 task; bench/bench_data_tasks.py, BENCHMARKS.md).
    """
    if scale.data_tasks:
        return scale.data_tasks
    return max(1, math.floor(cluster_cpus - scale.num_workers * scale.cpus_per_worker))


def cluster_cpus() -> float:
    """The CPUs of the Ray cluster this process is connected to."""
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def worker_threads(requested: int, node_cpus: int, local_workers: int) -> int:
    """Intra-op threads of a worker: ``requested``, or the node's CPUs shared by its workers.

    Ray sets ``OMP_NUM_THREADS`` from a worker's reserved CPUs, i.e. 1 for the fractional
    reservations a laptop needs, which would leave most cores idle during the step.
    """
    return requested if requested > 0 else max(1, node_cpus // max(1, local_workers))


def prepare(model: nn.Module, scale: ScaleOptions, world_size: int) -> nn.Module:
    """Threads, SyncBN (optional), device + DDP (``prepare_model``), cudnn autotuning and
    channels_last on a GPU, compile (optional)."""
    import ray.train
    import ray.train.torch

    local = ray.train.get_context().get_local_world_size()
    torch.set_num_threads(worker_threads(scale.torch_threads, os.cpu_count() or 1, local))
    if scale.sync_bn and world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
    if device.type == "cuda" and scale.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model = ray.train.torch.prepare_model(model)
    if scale.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


@dataclass
class Trial:
    """What a sweep trial (:mod:`echoseek.sweep`) adds to a training run: the MLflow run it
    nests under, its overrides (logged as ``override.<field>`` params) and the Ray Train
    callbacks that report each epoch to Tune. A trial prints no epoch lines of its own; the
    sweep prints one line per trial result."""

    parent_run_id: str
    overrides: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)

    def tags(self) -> dict[str, str]:
        """MLflow tags that nest the run under the sweep's parent run."""
        return {"mlflow.parentRunId": self.parent_run_id}

    def params(self) -> dict[str, Any]:
        """The trial's overrides as MLflow params."""
        return {f"override.{key}": value for key, value in self.overrides.items()}


def progress(
    trial: Trial | None, epochs: int, metric: str
) -> tuple[EpochPrinter | None, list[Any]]:
    """The epoch printer and Ray Train callbacks of a run: a job prints one line per epoch; a
    sweep trial reports to Tune instead."""
    if trial is not None:
        return None, list(trial.callbacks)
    printer = EpochPrinter(epochs, metric)
    return printer, [as_user_callback(printer)]


def fit_tracked(trainer: Any, logger: Any, printer: EpochPrinter | None) -> Any:
    """``trainer.fit()`` with the printer's lines (if any) relayed to this terminal; a failed
    run is marked FAILED in MLflow before the error propagates."""
    try:
        with printer.relay() if printer is not None else contextlib.nullcontext():
            return trainer.fit()
    except Exception:
        logger.end("FAILED")
        raise


def resume_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None) -> int:
    """The epoch to start from: 0, or the one after the checkpoint Ray Train restored (on a
    re-run of the same name or after a worker failure), whose state is loaded into the
    given components."""
    import ray.train

    from echoseek.training import load_state

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        state = load_state(directory, model=model, optimizer=optimizer, scaler=scaler)
    return int(state["epoch"]) + 1


def report_epoch(
    metrics: dict[str, Any],
    *,
    rank: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    scaler: Any = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """``ray.train.report`` on every rank; rank 0 attaches the training-state checkpoint."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_state(
            tmp,
            model=unwrap_model(model),
            optimizer=optimizer,
            epoch=epoch,
            scaler=scaler,
            metrics=metrics,
            extra=extra,
        )
        ray.train.report(
            {**metrics, PLACEMENT_GROUP: placement_group_hex()},
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"epoch-{epoch:05d}",
        )


PLACEMENT_GROUP = "placement_group"  # rank 0's report: the run's placement group (hex id)


def placement_group_hex() -> str:
    """The placement group this worker runs in, as a hex id ("" outside one). A sweep removes
    it when Tune stops the trial: the controller that would have is killed with the trial,
    and Train's own cleaner needs the dashboard's state API to notice."""
    import ray.util

    pg = ray.util.get_current_placement_group()
    return pg.id.hex() if pg is not None else ""


def log_epoch(
    logger: Any,
    metrics: Mapping[str, Any],
    *,
    epoch: int,
    first_step: int,
    step_losses: Sequence[float],
    lr_at: Callable[[int], float],
) -> None:
    """Rank 0's MLflow record of an epoch: its metrics at step ``epoch``, and per step
    (global step numbers) ``step_loss`` and ``step_lr``, in a few batched calls."""
    if logger is None:
        return
    logger.log_metrics(metrics, step=epoch)
    logger.log_series("step_loss", first_step, step_losses)
    logger.log_series(
        "step_lr", first_step, [lr_at(first_step + i) for i in range(len(step_losses))]
    )


def worker_context(seed: int) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)`` of this Train worker; seeds torch with ``seed + rank``."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(seed + rank)
    return rank, world, ray.train.torch.get_device()


def augment_seed(seed: int, rank: int, start_epoch: int) -> int:
    """The seed of a worker's augmentations: one stream per (run seed, rank, start epoch), so
    ranks differ and a resumed run does not replay the augmentations of its first epochs."""
    import numpy as np

    return int(np.random.SeedSequence([seed, rank, start_epoch]).generate_state(1)[0])


def epoch_metrics(epoch: int, stats: Any, **extra: Any) -> dict[str, Any]:
    """What every worker reports for an epoch: loss, img/s, the share of step time spent
    waiting for data, this process's peak RSS and its device's peak allocated memory (MiB, 0
    without a GPU), and ``extra``."""
    import resource

    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else 0.0
    return {
        "epoch": epoch,
        "loss": stats.loss,
        "images_per_s": stats.images_per_s,
        "data_wait_fraction": stats.wait_fraction,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "gpu_peak_mb": gpu,
        **extra,
    }


def end_epoch(
    metrics: dict[str, Any],
    stats: Any,
    *,
    rank: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    epoch: int,
    steps_per_epoch: int,
    lr_at: Callable[[int], float],
    logger: Any,
) -> None:
    """Log the epoch to MLflow (rank 0), then report it (rank 0 attaches the checkpoint).

    In this order a committed checkpoint implies its epoch is in MLflow: once every rank has
    reported, a worker that dies may take rank 0 down with it before anything after the
    report runs, and the restart resumes after that checkpoint.
    """
    log_epoch(
        logger,
        metrics,
        epoch=epoch,
        first_step=epoch * steps_per_epoch,
        step_losses=stats.step_losses,
        lr_at=lr_at,
    )
    report_epoch(metrics, rank=rank, model=model, optimizer=optimizer, epoch=epoch, scaler=scaler)


FEED = ("first_step_s", "images_per_s", "data_wait_fraction", "gpu_peak_mb")


def feed_summary(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """How well a run fed its device, from an epoch's metrics (rank 0's): time from the
    driver's start to the first optimizer step, img/s, data wait, peak GPU memory."""
    return {key: float(metrics[key]) for key in FEED if metrics and key in metrics}


def run_hooks(hooks: Sequence[EpochHook], epoch: int, rank: int, world: int) -> None:
    """Call every epoch hook the caller passed (through the loop config) for this epoch."""
    for hook in hooks:
        hook(epoch, rank, world)


class EpochPrinter:
    """Ray Train callback: one line per epoch (epoch, loss, img/s, ETA, validation metric).

    It runs in the Train controller, whose output a quiet driver does not forward
    (:func:`echoseek.ray_session.ensure_ray`), so its lines travel through a Ray queue that
    :meth:`relay` prints on the driver's terminal, unprefixed, while training runs. The queue's
    actor lives on the driver's node: a run that loses another node (and resumes) keeps its
    lines; should the queue die anyway, lines are dropped, never the run.
    """

    def __init__(self, epochs: int, metric: str) -> None:
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.epochs = epochs
        self.metric = metric
        self.started = time.perf_counter()
        self.done = 0
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})

    def emit(self, line: str) -> None:
        """Send one line to the driver (dropped when the queue is gone)."""
        from ray.exceptions import RayActorError

        with contextlib.suppress(RayActorError):
            self.queue.put(line)

    @contextlib.contextmanager
    def relay(self) -> Iterator[None]:
        """Print the emitted lines on this (the driver's) terminal while the block runs."""
        from ray.exceptions import RayActorError
        from ray.util.queue import Empty

        stop = threading.Event()

        def drain(timeout: float) -> None:
            while True:
                try:
                    print(self.queue.get(timeout=timeout), flush=True)
                except (Empty, RayActorError):
                    return

        def loop() -> None:
            while not stop.is_set():
                drain(0.5)

        thread = threading.Thread(target=loop, name="echoseek-epoch-lines", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            drain(0.1)
            with contextlib.suppress(RayActorError):
                self.queue.shutdown()

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        m = metrics[0] if metrics else {}
        self.done += 1
        epoch = int(m.get("epoch", self.done - 1)) + 1
        elapsed = time.perf_counter() - self.started
        eta = eta_seconds(elapsed, self.done, self.epochs - epoch + self.done)
        images_per_s = sum(float(x.get("images_per_s", 0.0)) for x in metrics)
        value = m.get(self.metric)
        self.emit(
            epoch_line(
                epoch,
                self.epochs,
                float(m.get("loss", float("nan"))),
                images_per_s,
                eta,
                None if value is None else float(value),
                self.metric,
            )
        )

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        for rank, exc in worker_exceptions.items():
            first = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            self.emit(f"worker {rank} failed: {first[0]} (restarting from the last checkpoint)")


def as_user_callback(printer: EpochPrinter) -> Any:
    """Wrap :class:`EpochPrinter` as a ``ray.train.UserCallback`` (imported lazily)."""
    from ray.train import UserCallback

    class _Printer(UserCallback):  # type: ignore[misc]
        def after_report(self, run_context: Any, metrics: Any, checkpoint: Any) -> None:
            printer.after_report(run_context, metrics, checkpoint)

        def after_exception(self, run_context: Any, worker_exceptions: Any) -> None:
            printer.after_exception(run_context, worker_exceptions)

    return _Printer()


def run_tags(job: str, dataset: Mapping[str, Any], **extra: str) -> dict[str, str]:
    """MLflow tags of a training run: job, git commit, Ray version, dataset sha256, extras."""
    import ray

    from echoseek.tracking import git_commit

    return {
        "job": job,
        "git_commit": git_commit(),
        "ray_version": ray.__version__,
        "dataset_sha256": str(dataset.get("sha256", "")),
        **extra,
    }


def plain(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain nested dicts (what Ray ships to the workers)."""
    return dataclasses.asdict(cfg)
