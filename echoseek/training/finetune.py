"""FastAP fine-tuning of a pretrained encoder on Ray Train, tracked in MLflow.

:func:`finetune` is what ``echoseek finetune`` (:mod:`echoseek.jobs.finetune`) and a sweep trial
call with a :class:`FinetuneConfig`. The pretrained encoder (a model dir or an MLflow model URI,
resolved once on the driver) gets a new embedding head (MLP → L2-normalised ``head.dim``). The
backbone is frozen (its BatchNorm statistics too); ``head.trainable=last_stage`` also trains the
last ResNet stage, ``head.trainable=all`` the whole backbone. AdamW on the trainable parameters,
linear warmup then cosine decay. Batches hold ``loss.m`` images per class
(:class:`~echoseek.data.samplers.MPerClassBatchSampler`, sharded across workers) so FastAP always
has positives; images are read from Parquet on demand (:mod:`echoseek.data.labelled`), so no
worker holds the dataset. Under DDP every worker ranks against the global batch gathered from
all workers (:class:`~echoseek.losses.GatherLoss`), with any distance of
:mod:`echoseek.distances`.

Validation is always held out: ``val`` names another labelled dataset, or, by default, a seeded
split of ``input`` stratified by label (``val_fraction``, ``seed``) is held out and never
trained on. Each epoch rank 0 measures leave-one-out mAP and P@10 on it, and the best checkpoint
by that mAP becomes the exported model; the split is recorded in MLflow and in ``model.json``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from echoseek.config import from_dict, plain
from echoseek.data.augment import AugmentConfig, eval_transform
from echoseek.data.dataset import labelled_ids, read_descriptor, shard_paths, validation_descriptor
from echoseek.data.frames import frame_shape
from echoseek.data.labelled import LabelIndex, LabelledFrames, decoded_batches, label_index
from echoseek.data.samplers import MPerClassBatchSampler
from echoseek.data.split import stratified_split
from echoseek.data.views import eval_view
from echoseek.distances import NAMES as DISTANCES
from echoseek.distances import resolve_params
from echoseek.errors import ConfigError
from echoseek.evaluation.ranking import rankme
from echoseek.losses import FastAPLoss, GatherLoss
from echoseek.model_ref import ModelRef
from echoseek.models.artifact import ModelMeta, build_model, load_model, model_input, save_model
from echoseek.models.finetune import TRAINABLE, build_finetune_model
from echoseek.ray_session import ensure_ray
from echoseek.storage import absolute, storage_uri
from echoseek.tracking import RunLogger, tracking_uri
from echoseek.training import (
    amp_dtype,
    augmented_inputs,
    embed_batches,
    fastap_step,
    load_state,
    make_scaler,
    retrieval_metrics,
    unwrap_model,
    warmup_cosine,
)
from echoseek.training.checkpoint import resume_epoch
from echoseek.training.options import RunOptions, ScaleOptions
from echoseek.training.reporting import feed_summary, run_tags
from echoseek.training.runner import WorkerRun, run_epochs
from echoseek.training.trainer import fit_tracked, make_trainer, progress
from echoseek.training.trial import Trial
from echoseek.training.worker import (
    EpochHook,
    decode_threads,
    prepare,
    worker_augmenter,
    worker_context,
)

if TYPE_CHECKING:
    from echoseek.models.head import EmbeddingModel


def _light_augment() -> AugmentConfig:
    return AugmentConfig(
        crop_scale_min=0.6, rotation_deg=5.0, blur_prob=0.0, speckle_prob=0.3, gamma_prob=0.2
    )


@dataclass
class HeadOptions:
    """The new embedding head and what else trains."""

    dim: int = 128
    hidden: int | None = 512
    trainable: str = "head"  # head | last_stage (+ layer4) | all (+ the whole backbone)

    def __post_init__(self) -> None:
        if self.dim < 2 or (self.hidden is not None and self.hidden < 2):
            raise ConfigError("head.dim and head.hidden must be >= 2")
        if self.trainable not in TRAINABLE:
            raise ConfigError(f"head.trainable: must be one of {list(TRAINABLE)}")


@dataclass
class LossOptions:
    """FastAP and the distance it ranks by."""

    distance: str = "sqeuclidean"
    distance_params: dict[str, float] = field(default_factory=dict)  # e.g. {p: 4}
    num_bins: int = 10
    m: int = 4  # images per class in a batch

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ConfigError(f"loss.distance: unknown '{self.distance}' ({', '.join(DISTANCES)})")
        try:
            resolve_params(self.distance, **self.distance_params)
        except ConfigError as exc:
            raise ConfigError(f"loss.distance_params: {exc}") from None
        if self.num_bins < 1 or self.m < 2:
            raise ConfigError("loss.num_bins >= 1 and loss.m >= 2 are required")


@dataclass
class AdamWOptions:
    """AdamW with warmup and cosine decay."""

    lr: float = 1e-3  # the head's peak rate
    backbone_lr_scale: float = 1.0  # the trained backbone's rate, as a fraction of lr
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"optim.lr: must be > 0, got {self.lr}")
        if not 0 < self.backbone_lr_scale <= 1:
            raise ConfigError(
                f"optim.backbone_lr_scale: must be in (0, 1], got {self.backbone_lr_scale}"
            )
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError("optim.weight_decay and optim.warmup_epochs must be >= 0")


@dataclass
class FinetuneConfig:
    """Options of ``echoseek finetune`` (and of a fine-tuning sweep trial)."""

    input: str = ""  # labelled dataset dir
    output: str = "work/model"  # model artifact of the fine-tuned model
    pretrained: str = ""  # model dir, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/ID/PATH
    val: str = ""  # another labelled dataset for validation; default: a held-out split of input
    val_fraction: float = 0.2  # held out of every class of input when val is empty
    # what held-out retrieval (val_map) ranks with, an exact re-rank of the val set: cosine,
    # any echoseek.distances name, or "loss" (loss.distance with loss.distance_params)
    val_distance: str = "cosine"
    epochs: int = 10
    batch_size: int = 32  # per worker; FastAP ranks against batch_size x workers
    seed: int = 0  # model init, batch order and the held-out split
    head: HeadOptions = field(default_factory=HeadOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    optim: AdamWOptions = field(default_factory=AdamWOptions)
    augment: AugmentConfig = field(default_factory=_light_augment)  # size/mean/std: the model's
    scale: ScaleOptions = field(default_factory=ScaleOptions)
    run: RunOptions = field(default_factory=RunOptions)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs: must be >= 1, got {self.epochs}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction: must be in (0, 1), got {self.val_fraction}")
        if self.val_distance not in (*DISTANCES, "loss"):
            raise ConfigError(
                f"val_distance: unknown '{self.val_distance}' ({', '.join(DISTANCES)}, loss)"
            )
        if self.optim.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"optim.warmup_epochs: {self.optim.warmup_epochs} must be less than "
                f"epochs ({self.epochs})"
            )
        if self.batch_size < 2 * self.loss.m or self.batch_size % self.loss.m:
            raise ConfigError(
                f"batch_size: must be a multiple of loss.m ({self.loss.m}) holding at least "
                f"two classes, got {self.batch_size}"
            )


@dataclass
class Validation:
    """Where validation rows come from: another dataset, or a held-out split of the input."""

    kind: str  # "dataset" | "held_out_split"
    path: str
    train_ids: frozenset[str] | None  # None: every labelled row of input trains
    val_ids: frozenset[str] | None  # None: every row of path validates
    record: dict[str, Any]  # what MLflow and model.json keep


def held_out(cfg: FinetuneConfig, desc: dict[str, Any]) -> Validation:
    """``val`` when given (refused if it is the training input), else a stratified split."""
    if cfg.val:
        val_desc = validation_descriptor(
            cfg.val,
            desc,
            "pass a held-out dataset, or leave val empty to hold out val_fraction of input",
        )
        record = {"kind": "dataset", "val": cfg.val, "val_sha256": val_desc.get("sha256", "")}
        return Validation("dataset", cfg.val, None, None, record)
    ids, labels = labelled_ids(cfg.input)
    split = stratified_split(ids, labels, cfg.val_fraction, cfg.seed)
    if len(split.val) < 2:
        raise ConfigError(
            f"val_fraction: {cfg.val_fraction} of {cfg.input} holds out {len(split.val)} "
            "row(s); validation needs at least two (pass val= or a larger fraction)"
        )
    record = {
        "kind": "held_out_split",
        "fraction": cfg.val_fraction,
        "seed": cfg.seed,
        "train_rows": len(split.train),
        "val_rows": len(split.val),
    }
    return Validation("held_out_split", cfg.input, split.train, split.val, record)


def resolve(cfg: FinetuneConfig) -> FinetuneConfig:
    """A copy of ``cfg`` as a run uses it: local paths absolute, the run named."""
    name = cfg.run.name or f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"
    run = dataclasses.replace(cfg.run, storage_path=storage_uri(cfg.run.storage_path), name=name)
    pretrained = ModelRef.parse(cfg.pretrained).absolute().uri if cfg.pretrained else ""
    return dataclasses.replace(
        cfg,
        input=absolute(cfg.input),
        val=absolute(cfg.val),
        output=absolute(cfg.output),
        pretrained=pretrained,
        run=run,
    )


def check(cfg: FinetuneConfig, tracking: str) -> tuple[FinetuneConfig, dict[str, Any], Validation]:
    """Checks before any worker starts; returns a copy of ``cfg`` whose ``pretrained`` is a
    local model directory (an MLflow model is copied once, under the run's storage), the
    input's descriptor and the validation rows."""
    if not cfg.input:
        raise ConfigError("input is required (a labelled dataset directory)")
    if not cfg.pretrained:
        raise ConfigError("pretrained is required (a model dir or an MLflow model URI)")
    desc = read_descriptor(cfg.input)
    shard_paths(cfg.input)  # shard checksums verified on the driver, before any worker reads
    local = ModelRef.parse(cfg.pretrained).local_dir(tracking, _model_copy(cfg))
    cfg = dataclasses.replace(cfg, pretrained=str(local))
    if len(desc.get("label_counts") or {}) < 2:
        raise ConfigError(f"{cfg.input}: fine-tuning needs labels of at least two classes")
    classes = len(desc["label_counts"])
    if cfg.batch_size // cfg.loss.m > classes:
        raise ConfigError(
            f"loss.m: batch_size {cfg.batch_size} / m {cfg.loss.m} = "
            f"{cfg.batch_size // cfg.loss.m} classes per batch, but {cfg.input} has only "
            f"{classes}; use m >= {-(-cfg.batch_size // classes)}"
        )
    return cfg, desc, held_out(cfg, desc)


# what every epoch reports (to Ray Train, Tune and MLflow); a sweep's ``metric`` is one of them
# start_*: the pretrained encoder's own embedding, measured before the first step
REPORTED = ("epoch", "loss", "images_per_s", "data_wait_fraction", "peak_rss_mb",
            "gpu_peak_mb", "worker_start_s", "first_batch_s", "first_step_s", "fastap_batch",
            "val_map", "val_p@10", "rankme", "start_val_map", "start_val_p@10")  # fmt: skip


def reported(cfg: FinetuneConfig) -> tuple[str, ...]:
    """The metric names each epoch of a run of ``cfg`` reports."""
    return REPORTED


def finetune(
    cfg: FinetuneConfig, hooks: Sequence[EpochHook] = (), trial: Trial | None = None
) -> dict[str, Any]:
    """Fine-tune on Ray, export the best held-out checkpoint, log the run; returns a summary.

    ``hooks`` are called on every worker at the start of every epoch (see :func:`run_hooks`);
    ``trial`` makes it a sweep trial (nested MLflow run, epochs reported to Tune).
    """
    import ray

    launched = time.time()  # the driver's start: the run's time to first step counts from here
    cfg = resolve(cfg)  # copies: the caller's config is never changed
    source = cfg.pretrained
    cfg, desc, validation = check(cfg, tracking_uri(cfg.run.tracking_uri))
    pretrained, meta = load_model(cfg.pretrained)  # refused here, before Ray and MLflow start
    cfg = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, **model_input(meta)))
    logger = RunLogger(cfg.run.tracking_uri, cfg.run.experiment)
    ensure_ray()
    tags = {**run_tags("finetune", desc, pretrained=source), **(trial.tags() if trial else {})}
    params = {**plain(cfg), "pretrained": source, "validation": validation.record}
    params.update(trial.params() if trial else {})
    index = label_index(cfg.input, keep=validation.train_ids)
    # transformed once: every epoch's validation reads these blocks
    channels, size = cfg.augment.in_channels, cfg.augment.size
    val = eval_view(validation.path, channels, size, keep=validation.val_ids)
    run_id = logger.start(cfg.run.name, params, tags)
    printer, callbacks = progress(trial, cfg.epochs, "val_map")
    trainer = make_trainer(
        finetune_loop,
        {
            "cfg": plain(cfg),
            "meta": meta.to_json(),
            "weights": ray.put(pretrained.state_dict()),
            "index": index,
            "frame_shape": frame_shape(desc, size),
            "launched": launched,
            "run_id": run_id,
            "tracking": logger.uri,
            "hooks": list(hooks),
        },
        scale=cfg.scale,
        run=cfg.run,
        datasets={"val": val},
        split=[],
        score="val_map",
        mode="max",
        callbacks=callbacks,
    )
    result = fit_tracked(trainer, logger, printer)
    summary = export(cfg, result, logger, (pretrained, meta), source, validation.record)
    logger.log_history_plot("loss")
    logger.end()
    return {**summary, "seconds": time.time() - launched, "run_id": run_id}


def _model_copy(cfg: FinetuneConfig) -> Path | None:
    """Where an MLflow pretrained model is copied once: under the run's (local) storage."""
    if "://" in cfg.run.storage_path:
        return None
    return Path(cfg.run.storage_path) / cfg.run.name / "pretrained"


def finetune_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: wires the helpers of :mod:`echoseek.training`."""
    import ray
    import ray.train
    import ray.train.torch

    entered = time.time()  # the start-up report: when this worker loop began
    cfg = from_dict(FinetuneConfig, config["cfg"])
    rank, world, device = worker_context(cfg.seed)
    pretrained = build_model(ModelMeta.from_json(config["meta"]))
    pretrained.load_state_dict(ray.get(config["weights"]))
    dtype = amp_dtype(device, cfg.scale.amp)
    start: dict[str, float] = {}
    if rank == 0:  # before any step (and before a resume loads trained weights into it)
        found = held_out_metrics(pretrained.to(device), cfg, device, dtype)
        start = {"start_val_map": found["val_map"], "start_val_p@10": found["val_p@10"]}
    h = cfg.head
    fresh = build_finetune_model(pretrained, dim=h.dim, hidden=h.hidden, trainable=h.trainable)
    model = prepare(fresh, cfg.scale, world)
    base = unwrap_model(model)
    fastap = FastAPLoss(cfg.loss.num_bins, cfg.loss.distance, **cfg.loss.distance_params)
    loss_fn = GatherLoss(fastap)
    optimizer = torch.optim.AdamW(
        finetune_groups(fresh, cfg.optim.backbone_lr_scale),  # the parameters DDP wraps
        lr=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
    )
    scaler = make_scaler(dtype)
    start_epoch = resume_epoch(base, optimizer, scaler)
    index: LabelIndex = config["index"]
    sampler = MPerClassBatchSampler(
        index.labels, cfg.loss.m, cfg.batch_size, cfg.seed, num_replicas=world, rank=rank
    )
    augmenter = worker_augmenter(cfg.augment, cfg.scale, device, cfg.seed, rank, start_epoch)
    augment = augmented_inputs(augmenter)
    shape = (int(config["frame_shape"][0]), int(config["frame_shape"][1]))
    frames = LabelledFrames(index, cfg.augment.in_channels, shape)  # decoded once, then kept
    steps_per_epoch = max(1, len(sampler))
    total, warmup = steps_per_epoch * cfg.epochs, int(cfg.optim.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        return float(cfg.optim.lr * warmup_cosine(step, total, warmup))

    local = ray.train.get_context().get_local_world_size()
    threads = decode_threads(device, os.cpu_count() or 1, local)

    def batches(epoch: int) -> Any:
        sampler.set_epoch(epoch)  # this epoch's m-per-class draw
        return decoded_batches(frames, sampler, pin=device.type == "cuda", threads=threads)

    parts = model, optimizer, scaler, device, dtype, rank, world, steps_per_epoch, lr_at
    run = WorkerRun.of(config, *parts, entered=entered)
    run_epochs(
        run,
        start=start_epoch,
        epochs=cfg.epochs,
        batches=batches,
        step_fn=fastap_step(loss_fn),
        prepare=augment,
        extra=lambda epoch, stats: {"fastap_batch": fastap.last_batch_size, "val_map": 0.0},
        evaluate=lambda: {**held_out_metrics(base, cfg, device, dtype), **start},
    )


def held_out_metrics(model: Any, cfg: FinetuneConfig, device: Any, dtype: Any) -> dict[str, float]:
    """Leave-one-out ``val_map``, ``val_p@10`` (ranked by :func:`val_ranking`) and RankMe of
    ``model`` on the held-out rows (this worker's ``val`` shard: rank 0 holds them all)."""
    import ray.train

    batches = ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=64)
    transform = partial(eval_transform, cfg=cfg.augment)
    vectors, labels = embed_batches(model, batches, device, amp_dtype=dtype, transform=transform)
    by, params = val_ranking(cfg)
    found = retrieval_metrics(vectors, labels, 10, None, by, params)
    return {"val_map": found["map"], "val_p@10": found["p@10"], "rankme": rankme(vectors)}


def finetune_groups(model: EmbeddingModel, backbone_lr_scale: float) -> list[dict[str, Any]]:
    """AdamW groups: the head at the scheduled rate, the trainable backbone at
    ``backbone_lr_scale`` of it (:func:`~echoseek.training.schedule.set_lr` applies the scale)."""
    head = [p for p in model.head.parameters() if p.requires_grad] if model.head else []
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": head, "lr_scale": 1.0}]
    return groups + ([{"params": backbone, "lr_scale": backbone_lr_scale}] if backbone else [])


def val_ranking(cfg: FinetuneConfig) -> tuple[str, dict[str, float]]:
    """The distance (and its parameters) held-out retrieval ranks with."""
    if cfg.val_distance == "loss":
        return cfg.loss.distance, dict(cfg.loss.distance_params)
    same = cfg.val_distance == cfg.loss.distance
    return cfg.val_distance, dict(cfg.loss.distance_params) if same else {}


def export(
    cfg: FinetuneConfig,
    result: Any,
    logger: Any,
    pretrained: tuple[EmbeddingModel, ModelMeta],
    source: str,
    validation: dict[str, Any],
) -> dict[str, Any]:
    """Save the best checkpoint (held-out validation mAP) on the ``pretrained`` encoder and
    its meta as the model artifact, and log it."""
    best = result.get_best_checkpoint("val_map", "max") or result.checkpoint
    if best is None:
        raise ConfigError(f"run {cfg.run.name}: training finished without a checkpoint")
    encoder, pre_meta = pretrained
    h = cfg.head
    model = build_finetune_model(encoder, dim=h.dim, hidden=h.hidden, trainable=h.trainable)
    with best.as_directory() as directory:
        state = load_state(directory, model=model)
    meta = dataclasses.replace(
        pre_meta,
        head_dim=h.dim,
        head_hidden=h.hidden,
        distance=cfg.loss.distance,
        extra={
            **pre_meta.extra,
            "finetune_run_name": cfg.run.name,
            "mlflow_run_id": logger.run_id,
            "pretrained": source,
            "best_epoch": int(state["epoch"]),
            "validation": validation,
            # what val_map (and so the choice of this checkpoint) ranked the held-out rows by
            "val_distance": val_ranking(cfg)[0],
            "val_distance_params": val_ranking(cfg)[1],
        },
    )
    save_model(model, cfg.output, meta, overwrite=cfg.overwrite)
    logger.log_artifacts(cfg.output, "model")
    version = logger.register(cfg.run.register, "model") if cfg.run.register else ""
    metrics = state.get("metrics") or {}
    gain = judge_gain(metrics, logger)
    return {
        "output": cfg.output,
        "best_epoch": int(state["epoch"]),
        "val_map": float(metrics.get("val_map", float("nan"))),
        "val_p@10": float(metrics.get("val_p@10", float("nan"))),
        **gain,
        **feed_summary(result.metrics),
        "validation": validation,
        "checkpoint": str(best.path),
        "storage": storage_uri(cfg.run.storage_path),
        "registered": f"models:/{cfg.run.register}/{version}" if version else "",
    }


def judge_gain(best: dict[str, Any], logger: Any) -> dict[str, Any]:
    """Did the best held-out epoch beat the pretrained encoder it started from? Returns
    ``start_val_map``, ``val_map_gain`` and ``beat_start``, also logged to the MLflow run (the
    tag ``echoseek.finetune.beat_start``) so that a run that made things worse never ends
    silently: the job's summary says so too."""
    start = float(best.get("start_val_map", float("nan")))
    gain = float(best.get("val_map", float("nan"))) - start
    beat = bool(gain > 0)
    logger.log_metrics({"start_val_map": start, "val_map_gain": gain}, step=0)
    logger.set_tags({"echoseek.finetune.beat_start": str(beat).lower()})
    return {"start_val_map": start, "val_map_gain": gain, "beat_start": beat}
