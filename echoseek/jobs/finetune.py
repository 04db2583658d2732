"""FastAP fine-tuning of a pretrained encoder on Ray Train, tracked in MLflow.

    echoseek finetune ray_jobs/finetune.yaml
    echoseek finetune input=work/dataset pretrained=work/model_ssl output=work/model
    echoseek finetune input=work/dataset pretrained=models:/encoder/3 loss.distance=soart3_gamma
    ray job submit --working-dir . -- python -m echoseek.jobs.finetune ray_jobs/finetune.yaml

The pretrained encoder (a model dir or an MLflow model URI, e.g. ``echoseek pretrain``'s
output) gets a new embedding head (MLP → L2-normalised ``head.dim``). The backbone is frozen
(its BatchNorm statistics too); ``head.trainable=last_stage`` also trains the last ResNet
stage, ``head.trainable=all`` the whole backbone (what a small-data domain shift such as the
phantom's needs, see BENCHMARKS.md).
AdamW on the trainable parameters, linear warmup then cosine decay. Batches hold ``loss.m``
images per class (:class:`~echoseek.data.samplers.MPerClassBatchSampler`, sharded across
workers) so FastAP always has positives; under DDP every worker ranks against the global batch
gathered from all workers (:class:`~echoseek.losses.GatherLoss`), with any distance of
:mod:`echoseek.distances` (SOART3 included). Each epoch rank 0 measures leave-one-out mAP
and P@10 on ``val`` (default: the training data), checkpoints the state, and the best
checkpoint by validation mAP becomes the exported model (``output``), logged to MLflow.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from echoseek.config import from_dict
from echoseek.data.augment import AugmentConfig
from echoseek.data.dataset import read_descriptor
from echoseek.distances import NAMES as DISTANCES
from echoseek.errors import ConfigError
from echoseek.jobs.ray_train import (
    EpochPrinter,
    RunOptions,
    ScaleOptions,
    absolute,
    as_user_callback,
    fit_tracked,
    log_epoch,
    make_trainer,
    maybe_fail,
    output_lines,
    plain,
    prepare,
    report_epoch,
    resume_epoch,
    run_tags,
    storage_uri,
)
from echoseek.jobs.runner import run_job
from echoseek.models.head import EmbeddingHead, EmbeddingModel


def _light_augment() -> AugmentConfig:
    return AugmentConfig(
        crop_scale_min=0.6, rotation_deg=5.0, blur_prob=0.0, speckle_prob=0.3, gamma_prob=0.2
    )


TRAINABLE = ("head", "last_stage", "all")


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
        if self.num_bins < 1 or self.m < 2:
            raise ConfigError("loss.num_bins >= 1 and loss.m >= 2 are required")


@dataclass
class OptimOptions:
    """AdamW with warmup and cosine decay."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"optim.lr: must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError("optim.weight_decay and optim.warmup_epochs must be >= 0")


@dataclass
class Config:
    """Options of ``echoseek finetune``."""

    input: str = ""  # labelled dataset dir
    output: str = "work/model"  # model artifact of the fine-tuned model
    pretrained: str = ""  # model dir, models:/NAME/VERSION or runs:/ID/PATH
    val: str = ""  # labelled dataset for validation; default: input
    epochs: int = 10
    batch_size: int = 32  # per worker; FastAP ranks against batch_size x workers
    seed: int = 0
    head: HeadOptions = field(default_factory=HeadOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    augment: AugmentConfig = field(default_factory=_light_augment)  # size/mean/std: the model's
    scale: ScaleOptions = field(default_factory=ScaleOptions)
    run: RunOptions = field(default_factory=RunOptions)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs: must be >= 1, got {self.epochs}")
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


def check(cfg: Config) -> dict[str, Any]:
    """Checks before any worker starts; fixes the input size/normalisation to the model's."""
    from echoseek.models.artifact import META_FILE, read_meta, resolve_model_path
    from echoseek.tracking import tracking_uri

    if not cfg.input:
        raise ConfigError("input is required (a labelled dataset directory)")
    if not cfg.pretrained:
        raise ConfigError("pretrained is required (a model dir or an MLflow model URI)")
    desc = read_descriptor(cfg.input)
    for path in (cfg.input, cfg.val or cfg.input):
        if len(read_descriptor(path).get("label_counts") or {}) < 2:
            raise ConfigError(f"{path}: fine-tuning needs labels of at least two classes")
    classes = len(desc["label_counts"])
    if cfg.batch_size // cfg.loss.m > classes:
        raise ConfigError(
            f"loss.m: batch_size {cfg.batch_size} / m {cfg.loss.m} = "
            f"{cfg.batch_size // cfg.loss.m} classes per batch, but {cfg.input} has only "
            f"{classes}; use m >= {-(-cfg.batch_size // classes)}"
        )
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri(cfg.run.tracking_uri))
    meta = read_meta(resolve_model_path(cfg.pretrained) / META_FILE)
    if meta.in_channels != cfg.augment.in_channels:
        cfg.augment = AugmentConfig(**{**plain(cfg.augment), "in_channels": meta.in_channels})
    cfg.augment = AugmentConfig(
        **{
            **plain(cfg.augment),
            "size": meta.input_size[0],
            "mean": list(meta.mean),
            "std": list(meta.std),
        }
    )
    return desc


def run(cfg: Config) -> dict[str, Any]:
    """Fine-tune on Ray, export the best model, log the run; returns a summary."""
    from echoseek.data.dataset import read_dataset
    from echoseek.data.views import eval_dataset
    from echoseek.ray_session import ensure_ray
    from echoseek.tracking import RunLogger

    cfg.input = absolute(cfg.input)
    cfg.val = absolute(cfg.val)
    cfg.output = absolute(cfg.output)
    cfg.pretrained = absolute(cfg.pretrained)
    cfg.run.storage_path = storage_uri(cfg.run.storage_path)
    desc = check(cfg)
    cfg.run.name = cfg.run.name or f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"
    logger = RunLogger(cfg.run.tracking_uri, cfg.run.experiment)
    ensure_ray()
    tags = run_tags("finetune", desc, pretrained=cfg.pretrained)
    run_id = logger.start(cfg.run.name, plain(cfg), tags)
    datasets = {
        "labelled": read_dataset(cfg.input),
        "val": eval_dataset(cfg.val or cfg.input, cfg.augment, num_cpus=cfg.scale.data_cpus),
    }
    trainer = make_trainer(
        train_loop,
        {"cfg": plain(cfg), "run_id": run_id, "tracking": logger.uri},
        scale=cfg.scale,
        run=cfg.run,
        datasets=datasets,
        split=[],
        score="val_map",
        mode="max",
        callbacks=[as_user_callback(EpochPrinter(cfg.epochs, "val_map"))],
    )
    started = time.perf_counter()
    result = fit_tracked(trainer, logger)
    summary = export(cfg, result, logger)
    logger.log_history_plot("loss")
    logger.end()
    return {**summary, "seconds": time.perf_counter() - started, "run_id": run_id}


class FineTuneModel(EmbeddingModel):
    """An :class:`EmbeddingModel` whose frozen backbone part stays in eval mode.

    ``trainable``: ``head`` (backbone frozen), ``last_stage`` (layer4 trains too) or ``all``.
    ``train()`` puts the trained parts in training mode but keeps the frozen layers in eval
    mode, so their BatchNorm uses, and keeps, the pretrained statistics. The state dict is
    exactly the EmbeddingModel's.
    """

    def __init__(self, base: EmbeddingModel, head: EmbeddingHead, trainable: str) -> None:
        super().__init__(base.backbone, head)
        self.trainable = trainable
        for p in self.backbone.parameters():
            p.requires_grad = trainable == "all"
        if trainable == "last_stage":
            for p in self.backbone.layer4.parameters():
                p.requires_grad = True

    def train(self, mode: bool = True) -> FineTuneModel:
        super().train(mode)
        if self.trainable != "all":
            self.backbone.eval()
        if mode and self.trainable == "last_stage":
            self.backbone.layer4.train()
        return self


def build_finetune_model(pretrained: EmbeddingModel, head: HeadOptions) -> FineTuneModel:
    """The pretrained backbone with a fresh head, frozen as ``head`` says."""
    new_head = EmbeddingHead(pretrained.backbone.feature_dim, head.dim, head.hidden)
    return FineTuneModel(pretrained, new_head, head.trainable)


def train_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: wires the helpers of :mod:`echoseek.training`."""
    import ray.train
    import ray.train.torch
    import torch

    from echoseek.data.augment import build_transform
    from echoseek.data.labelled import LabelledImages, decoded_batches
    from echoseek.data.samplers import MPerClassBatchSampler
    from echoseek.losses import FastAPLoss, GatherLoss
    from echoseek.models.artifact import load_model
    from echoseek.tracking import RunLogger
    from echoseek.training import (
        amp_dtype,
        embed_batches,
        fastap_step,
        make_scaler,
        retrieval_metrics,
        train_epoch,
        unwrap_model,
        warmup_cosine,
    )

    cfg = from_dict(Config, config["cfg"])
    os.environ["MLFLOW_TRACKING_URI"] = config["tracking"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.seed + rank)
    device = ray.train.torch.get_device()
    pretrained, _ = load_model(cfg.pretrained)
    model = prepare(build_finetune_model(pretrained, cfg.head), cfg.scale, world)
    base = unwrap_model(model)
    fastap = FastAPLoss(cfg.loss.num_bins, cfg.loss.distance, **cfg.loss.distance_params)
    loss_fn = GatherLoss(fastap)
    trainable = [p for p in base.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    dtype = amp_dtype(device, cfg.scale.amp)
    scaler = make_scaler(dtype)
    start_epoch = resume_epoch(base, optimizer, scaler)
    store = LabelledImages.from_batches(
        ray.train.get_dataset_shard("labelled").iter_batches(batch_format="numpy")
    )
    sampler = MPerClassBatchSampler(
        store.labels, cfg.loss.m, cfg.batch_size, cfg.seed, num_replicas=world, rank=rank
    )
    transform = build_transform(cfg.augment)
    steps_per_epoch = max(1, len(sampler))
    total, warmup = steps_per_epoch * cfg.epochs, int(cfg.optim.warmup_epochs * steps_per_epoch)
    logger = RunLogger(config["tracking"]).attach(config["run_id"]) if rank == 0 else None

    def lr_at(step: int) -> float:
        return float(cfg.optim.lr * warmup_cosine(step, total, warmup))

    for epoch in range(start_epoch, cfg.epochs):
        maybe_fail(cfg.run.fail_at_epoch, epoch, rank, cfg.run.storage_path, cfg.run.name)
        sampler.set_epoch(epoch)
        stats = train_epoch(
            model=model,
            batches=decoded_batches(store, sampler, transform, cfg.augment.in_channels),
            optimizer=optimizer,
            step_fn=fastap_step(loss_fn),
            lr_at=lr_at,
            start_step=epoch * steps_per_epoch,
            device=device,
            amp_dtype=dtype,
            scaler=scaler,
        )
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "loss": stats.loss,
            "images_per_s": stats.images_per_s,
            "data_wait_fraction": stats.wait_fraction,
            "fastap_batch": fastap.last_batch_size,
            "val_map": 0.0,
        }
        if rank == 0:
            batches = ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=64)
            vectors, labels = embed_batches(base, batches, device, amp_dtype=dtype)
            found = retrieval_metrics(vectors, labels, positive_label=None)
            metrics.update({"val_map": found["map"], "val_p@10": found["p@10"]})
        report_epoch(
            metrics, rank=rank, model=model, optimizer=optimizer, epoch=epoch, scaler=scaler
        )
        log_epoch(
            logger,
            metrics,
            epoch=epoch,
            first_step=epoch * steps_per_epoch,
            step_losses=stats.step_losses,
            lr_at=lr_at,
        )


def export(cfg: Config, result: Any, logger: Any) -> dict[str, Any]:
    """Save the best checkpoint (validation mAP) as the model artifact and log it."""
    import dataclasses

    from echoseek.models.artifact import load_model, save_model
    from echoseek.training import load_state

    best = result.get_best_checkpoint("val_map", "max") or result.checkpoint
    if best is None:
        raise ConfigError(f"run {cfg.run.name}: training finished without a checkpoint")
    pretrained, pre_meta = load_model(cfg.pretrained)
    model = build_finetune_model(pretrained, cfg.head)
    with best.as_directory() as directory:
        state = load_state(directory, model=model)
    meta = dataclasses.replace(
        pre_meta,
        head_dim=cfg.head.dim,
        head_hidden=cfg.head.hidden,
        distance=cfg.loss.distance,
        extra={
            **pre_meta.extra,
            "finetune_run_name": cfg.run.name,
            "mlflow_run_id": logger.run_id,
            "pretrained": cfg.pretrained,
            "best_epoch": int(state["epoch"]),
        },
    )
    save_model(model, cfg.output, meta, overwrite=cfg.overwrite)
    logger.log_artifacts(cfg.output, "model")
    version = logger.register(cfg.run.register, "model") if cfg.run.register else ""
    metrics = state.get("metrics") or {}
    return {
        "output": cfg.output,
        "best_epoch": int(state["epoch"]),
        "val_map": float(metrics.get("val_map", float("nan"))),
        "val_p@10": float(metrics.get("val_p@10", float("nan"))),
        "checkpoint": str(best.path),
        "storage": storage_uri(cfg.run.storage_path),
        "registered": f"models:/{cfg.run.register}/{version}" if version else "",
    }


def summarize(s: dict[str, Any]) -> str:
    """The closing lines for the terminal."""
    head = (
        f"fine-tuned in {s['seconds']:.0f} s: best epoch {s['best_epoch']}, "
        f"val mAP {s['val_map']:.3f}, P@10 {s['val_p@10']:.2f}"
    )
    return "\n".join([head, *output_lines(s)])


def main(argv: Sequence[str] | None = None, prog: str = "echoseek finetune") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
