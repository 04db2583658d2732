"""Self-supervised pretraining (SimSiam by default) on Ray Train, tracked in MLflow.

:func:`pretrain` is what ``echoseek pretrain`` (:mod:`echoseek.jobs.pretrain`) and a sweep trial
call with a :class:`PretrainConfig`. Each Ray Train worker builds the method (``method``: simsiam,
byol, barlow, simclr, instdisc) on a ResNet backbone, wraps it in DDP, and trains on its shard of
the Ray Data frame stream (:mod:`echoseek.data.views`: Ray Data tasks read and decode uint8 frames)
and draws the two augmented views of each batch on its own device (:mod:`echoseek.data.augment`).
SimSiam recipe: SGD (momentum 0.9, weight decay 1e-4), lr = base_lr ×
global batch / 256, linear warmup then cosine decay, the predictor's lr optionally fixed. After each
epoch every worker reports loss and img/s, rank 0 adds RankMe and the collapse std on a fixed probe
subset and, when ``val`` names a labelled dataset, the leave-one-out retrieval mAP and P@10; rank 0
checkpoints the training state (kept: the ``run.keep`` best). Re-running with the same ``run.name``
resumes from its last checkpoint; crashed workers restart from it (``run.max_failures``). The final
encoder is exported as a model artifact (``output``) and logged, with the config and a loss curve,
to an MLflow run (``run.register`` registers it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch

from echoseek.config import from_dict, plain
from echoseek.data.augment import AugmentConfig, eval_transform
from echoseek.data.dataset import read_descriptor, shard_paths, validation_descriptor
from echoseek.data.views import eval_view, frame_dataset
from echoseek.errors import ConfigError
from echoseek.evaluation.anomaly import leave_one_out_auroc
from echoseek.models.artifact import ModelMeta, build_model, save_model
from echoseek.models.backbones import BACKBONES, POOLINGS, build_backbone
from echoseek.models.ssl import METHODS, build_method
from echoseek.models.ssl.base import SSLMethod
from echoseek.ray_session import cluster_cpus, ensure_ray
from echoseek.storage import absolute, storage_uri
from echoseek.tracking import RunLogger
from echoseek.training import (
    amp_dtype,
    embed_batches,
    load_state,
    make_scaler,
    param_groups,
    representation_metrics,
    retrieval_metrics,
    scaled_lr,
    ssl_step,
    two_view_inputs,
    unwrap_model,
    warmup_cosine,
)
from echoseek.training.checkpoint import resume_epoch
from echoseek.training.options import RunOptions, ScaleOptions
from echoseek.training.reporting import feed_summary, run_tags
from echoseek.training.runner import WorkerRun, run_epochs
from echoseek.training.trainer import data_task_limit, fit_tracked, make_trainer, progress
from echoseek.training.trial import Trial
from echoseek.training.worker import EpochHook, prepare, worker_augmenter, worker_context


@dataclass
class EncoderOptions:
    """The encoder."""

    backbone: str = "resnet18"
    in_channels: int = 1
    small_stem: bool = True  # 3x3 stem, no max-pool: for inputs <= 64 px
    pooling: str = "avg"
    method_options: dict[str, Any] = field(default_factory=dict)  # e.g. {dim: 2048}

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"model.backbone: unknown '{self.backbone}' ({', '.join(BACKBONES)})")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"model.pooling: must be one of {list(POOLINGS)}")


@dataclass
class SGDOptions:
    """SGD with the SimSiam schedule."""

    base_lr: float = 0.05  # lr = base_lr x global_batch / 256
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    fix_predictor_lr: bool = True

    def __post_init__(self) -> None:
        if not self.base_lr > 0:
            raise ConfigError(f"optim.base_lr: must be > 0, got {self.base_lr}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError("optim: momentum in [0, 1), weight_decay and warmup_epochs >= 0")


@dataclass
class PretrainConfig:
    """Options of ``echoseek pretrain`` (and of a pretraining sweep trial)."""

    input: str = ""  # dataset dir (echoseek ingest)
    output: str = "work/model_ssl"  # model artifact of the trained encoder
    val: str = ""  # labelled dataset dir for retrieval mAP each epoch (optional)
    normal_labels: list[int] | None = None  # with val: also val_auroc (labels of normal items)
    method: str = "simsiam"
    epochs: int = 10
    batch_size: int = 32  # per worker; global = batch_size x scale.num_workers
    probe_size: int = 256  # rows of val (or input) for RankMe / collapse std
    seed: int = 0
    model: EncoderOptions = field(default_factory=EncoderOptions)
    optim: SGDOptions = field(default_factory=SGDOptions)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    scale: ScaleOptions = field(default_factory=ScaleOptions)
    run: RunOptions = field(default_factory=RunOptions)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method: unknown '{self.method}' (known: {', '.join(METHODS)})")
        if self.epochs < 1 or self.batch_size < 2 or self.probe_size < 2:
            raise ConfigError("epochs >= 1, batch_size >= 2 and probe_size >= 2 are required")
        if self.augment.in_channels != self.model.in_channels:
            raise ConfigError("augment.in_channels must equal model.in_channels")
        if self.optim.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"optim.warmup_epochs: {self.optim.warmup_epochs} must be less than "
                f"epochs ({self.epochs})"
            )


def resolve(cfg: PretrainConfig) -> PretrainConfig:
    """A copy of ``cfg`` as a run uses it: local paths absolute, the run named."""
    name = cfg.run.name or f"pretrain-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = dataclasses.replace(cfg.run, storage_path=storage_uri(cfg.run.storage_path), name=name)
    return dataclasses.replace(
        cfg, input=absolute(cfg.input), val=absolute(cfg.val), output=absolute(cfg.output), run=run
    )


def check(cfg: PretrainConfig) -> tuple[PretrainConfig, dict[str, Any]]:
    """Everything that can be checked before a worker starts; returns ``cfg`` completed from
    the input (a copy, see :func:`size_memory_bank`) and the dataset descriptor."""
    if not cfg.input:
        raise ConfigError("input is required (a dataset directory from echoseek ingest)")
    desc = read_descriptor(cfg.input)
    shard_paths(cfg.input)  # shard checksums verified on the driver, before any worker reads
    if cfg.val:
        validation_descriptor(cfg.val, desc, "validation metrics need a held-out dataset")
    if cfg.normal_labels is not None and not cfg.val:
        raise ConfigError("normal_labels: val_auroc needs a labelled held-out dataset (val=)")
    cfg = size_memory_bank(cfg, int(desc["count"]))
    rows_per_worker = desc["count"] // cfg.scale.num_workers
    if rows_per_worker < cfg.batch_size:
        raise ConfigError(
            f"batch_size: {cfg.batch_size} per worker but each of the {cfg.scale.num_workers} "
            f"workers gets only {rows_per_worker} rows of {cfg.input}"
        )
    out = Path(cfg.output)
    if out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"output: {out} exists and is not empty (use overwrite=true)")
    return cfg, desc


def size_memory_bank(cfg: PretrainConfig, rows: int) -> PretrainConfig:
    """A method with a memory bank (``needs_index``: InstDisc) gets one row per input row:
    a copy of ``cfg`` with ``model.method_options.num_data`` set to the dataset's count, or
    refused when it names another count (the stream's ``index`` runs over every row of
    ``input``); ``cfg`` itself for any other method."""
    method = METHODS.get(cfg.method)
    if method is None or not method.needs_index:
        return cfg
    given = cfg.model.method_options.get("num_data")
    if given is not None and given != rows:
        raise ConfigError(
            f"model.method_options.num_data: {given}, but {cfg.input} has {rows} rows "
            f"(leave it out: it is set to the input's count)"
        )
    options = {**cfg.model.method_options, "num_data": rows}
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, method_options=options))


# what every epoch reports (to Ray Train, Tune and MLflow); with a ``val`` dataset also
# REPORTED_WITH_VAL. A sweep's ``metric`` must be one of them.
REPORTED = ("epoch", "loss", "images_per_s", "data_wait_fraction", "peak_rss_mb",
            "gpu_peak_mb", "worker_start_s", "first_batch_s", "first_step_s", "lr", "rankme",
            "collapse_std")  # fmt: skip
REPORTED_WITH_VAL = ("val_map", "val_p@10")
ANOMALY_K = 5  # neighbours of val_auroc's kNN score (evaluation.anomaly)


def reported(cfg: PretrainConfig) -> tuple[str, ...]:
    """The metric names each epoch of a run of ``cfg`` reports."""
    anomaly = ("val_auroc",) if cfg.val and cfg.normal_labels is not None else ()
    return REPORTED + (REPORTED_WITH_VAL if cfg.val else ()) + anomaly


def pretrain(
    cfg: PretrainConfig, hooks: Sequence[EpochHook] = (), trial: Trial | None = None
) -> dict[str, Any]:
    """Train on Ray, export the encoder, log the run; returns a summary.

    ``hooks`` are called on every worker at the start of every epoch (see :func:`run_hooks`);
    ``trial`` makes it a sweep trial (nested MLflow run, epochs reported to Tune).
    """
    launched = time.time()  # the driver's start: the run's time to first step counts from here
    cfg, desc = check(resolve(cfg))  # copies: the caller's config is never changed
    logger = RunLogger(cfg.run.tracking_uri, cfg.run.experiment)
    ensure_ray()
    # the eval views are transformed once, before training: each epoch's RankMe and val mAP
    # read these blocks instead of starting a Ray Data pipeline (seconds) every epoch
    channels, size = cfg.augment.in_channels, cfg.augment.size
    datasets = {
        "train": frame_dataset(
            cfg.input,
            channels,
            size,
            batch_size=cfg.batch_size,
            num_cpus=cfg.scale.data_cpus,
            epochs=cfg.epochs,
            seed=cfg.seed,
            tasks=data_task_limit(cfg.scale, cluster_cpus()),
        ),
        "probe": eval_view(cfg.val or cfg.input, channels, size, limit=cfg.probe_size),
    }
    if cfg.val:
        datasets["val"] = eval_view(cfg.val, channels, size)
    nested = trial.tags() if trial else {}
    params = {**plain(cfg), **(trial.params() if trial else {})}
    run_id = logger.start(cfg.run.name, params, {**run_tags("pretrain", desc), **nested})
    score, mode = ("val_map", "max") if cfg.val else ("loss", "min")
    printer, callbacks = progress(trial, cfg.epochs, score if cfg.val else "rankme")
    trainer = make_trainer(
        pretrain_loop,
        {
            "cfg": plain(cfg),
            "rows": desc["count"],
            "run_id": run_id,
            "tracking": logger.uri,
            "hooks": list(hooks),
            "launched": launched,
        },
        scale=cfg.scale,
        run=cfg.run,
        datasets=datasets,
        split=["train"],
        score=score,
        mode=mode,
        callbacks=callbacks,
    )
    result = fit_tracked(trainer, logger, printer)
    summary = export(cfg, result, logger)
    logger.end()
    return {**summary, "seconds": time.time() - launched, "run_id": run_id}


def pretrain_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: wires the helpers of :mod:`echoseek.training`."""
    import ray.train
    import ray.train.torch

    entered = time.time()  # the start-up report: when this worker loop began
    cfg = from_dict(PretrainConfig, config["cfg"])
    rank, world, device = worker_context(cfg.seed)
    m = cfg.model
    backbone = build_backbone(m.backbone, m.in_channels, m.small_stem, m.pooling)
    method = build_method(cfg.method, backbone, **m.method_options)
    model = prepare(method, cfg.scale, world)
    base = cast(SSLMethod, unwrap_model(model))
    lr = scaled_lr(cfg.optim.base_lr, cfg.batch_size * world)
    groups = param_groups(
        base,
        fixed_lr_prefixes=("predictor",) if cfg.optim.fix_predictor_lr else (),
        weight_decay=cfg.optim.weight_decay,
    )
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.optim.momentum)
    dtype = amp_dtype(device, cfg.scale.amp)
    scaler = make_scaler(dtype)
    start_epoch = resume_epoch(base, optimizer, scaler)
    steps_per_epoch = max(1, config["rows"] // world // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.optim.warmup_epochs * steps_per_epoch)
    # One stream over every epoch (echoseek.data.views): epochs are counted in steps, so the
    # pipeline never restarts and prepares the next epoch while rank 0 validates.
    stream = iter(
        ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=cfg.batch_size,
            drop_last=True,
            prefetch_batches=2,
            pin_memory=device.type == "cuda",
        )
    )
    augmenter = worker_augmenter(cfg.augment, cfg.scale, device, cfg.seed, rank, start_epoch)
    views = two_view_inputs(augmenter)

    def lr_at(step: int) -> float:
        return float(lr * warmup_cosine(step, total, warmup))

    parts = model, optimizer, scaler, device, dtype, rank, world, steps_per_epoch, lr_at
    run = WorkerRun.of(config, *parts, entered=entered)
    run_epochs(
        run,
        start=start_epoch,
        epochs=cfg.epochs,
        batches=lambda epoch: stream,  # one stream, epochs counted in steps
        max_steps=steps_per_epoch,
        step_fn=ssl_step,
        prepare=views,
        on_step_end=base.on_step_end,
        extra=lambda epoch, stats: {"lr": lr_at((epoch + 1) * steps_per_epoch - 1)},
        evaluate=lambda: evaluate(
            base, cfg.augment, device, dtype, has_val=bool(cfg.val), normal=cfg.normal_labels
        ),
    )


def evaluate(
    model: Any,
    augment: AugmentConfig,
    device: Any,
    dtype: Any,
    has_val: bool,
    normal: list[int] | None = None,
) -> dict[str, float]:
    """Rank 0: RankMe and collapse std on the probe subset; retrieval mAP on ``val`` and, with
    ``normal`` labels, the AUROC of kNN anomaly scores there (frames through the evaluation
    transform on the device)."""
    import ray.train

    def embed(name: str) -> Any:
        batches = ray.train.get_dataset_shard(name).iter_torch_batches(batch_size=64)
        return embed_batches(
            model, batches, device, embed=model.embed, amp_dtype=dtype,
            transform=partial(eval_transform, cfg=augment),
        )  # fmt: skip

    probe, _ = embed("probe")
    out = representation_metrics(probe)
    if has_val:
        vectors, labels = embed("val")
        retrieval = retrieval_metrics(vectors, labels)
        out.update({"val_map": retrieval["map"], "val_p@10": retrieval["p@10"]})
        if normal is not None:
            out["val_auroc"] = leave_one_out_auroc(vectors, labels, normal, ANOMALY_K)
    return out


def export(cfg: PretrainConfig, result: Any, logger: Any) -> dict[str, Any]:
    """Save the final encoder as a model artifact, log it with the config and loss curve."""
    if result.checkpoint is None:
        raise ConfigError(f"run {cfg.run.name}: training finished without a checkpoint")
    meta = ModelMeta(
        backbone=cfg.model.backbone,
        in_channels=cfg.model.in_channels,
        small_stem=cfg.model.small_stem,
        pooling=cfg.model.pooling,
        head_dim=None,
        head_hidden=None,
        input_size=(cfg.augment.size, cfg.augment.size),
        mean=tuple(cfg.augment.mean),
        std=tuple(cfg.augment.std),
        distance="cosine",
        extra={"method": cfg.method, "run_name": cfg.run.name, "mlflow_run_id": logger.run_id},
    )
    encoder = build_model(meta)
    method = _fresh_method(cfg)
    with result.checkpoint.as_directory() as directory:
        state = load_state(directory, model=method)
    encoder.backbone.load_state_dict(method.backbone.state_dict())
    save_model(encoder, cfg.output, meta, overwrite=cfg.overwrite)
    history = _history(result)
    logger.log_artifacts(cfg.output, "model")
    logger.log_history_plot("loss")
    version = logger.register(cfg.run.register, "model") if cfg.run.register else ""
    last = history[-1] if history else {}
    return {
        "output": cfg.output,
        "epochs": int(state["epoch"]) + 1,
        "loss": last.get("loss", math.nan),
        "val_map": last.get("val_map"),
        "rankme": last.get("rankme"),
        **feed_summary(last),
        "checkpoint": str(result.checkpoint.path),
        "storage": storage_uri(cfg.run.storage_path),
        "registered": f"models:/{cfg.run.register}/{version}" if version else "",
    }


def _fresh_method(cfg: PretrainConfig) -> Any:
    m = cfg.model
    backbone = build_backbone(m.backbone, m.in_channels, m.small_stem, m.pooling)
    return build_method(cfg.method, backbone, **m.method_options)


def _history(result: Any) -> list[dict[str, Any]]:
    """Per-epoch metrics of the kept checkpoints, in epoch order."""
    rows = [dict(metrics) for _, metrics in (result.best_checkpoints or [])]
    if result.metrics:
        rows.append(dict(result.metrics))
    by_epoch = {int(r["epoch"]): r for r in rows if "epoch" in r}
    return [by_epoch[e] for e in sorted(by_epoch)]
