"""Pretraining step throughput: Ray Train (1 and 2 workers) vs a plain PyTorch loop.

    .venv/bin/python bench/bench_train.py [--frames 256] [--size 32] [--batch 32] [--epochs 3]

Same model (SimSiam on ResNet-18 with the small stem, 1 channel), batch size, optimizer
(SGD, lr 0.05 × batch/256, momentum 0.9, wd 1e-4), augmentation and data (a phantom cine
ingested into a dataset dir) on both sides. The plain loop decodes each batch in its own
process (:func:`echoseek.data.views.frame_batch`) and runs :func:`echoseek.training.train_epoch`
with the same batched two-view augmentation as the job; ``echoseek pretrain`` runs the same
step on Ray Train workers fed by Ray Data. Each side reports the img/s of ``train_epoch``
(data wait included) for its last epoch (the first one pays start-up costs), and the job's
data-wait fraction. With 2 workers the aggregate is 2 × rank 0's rate (the workers are symmetric).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import torch

from echoseek.config import load_config
from echoseek.data.augment import AugmentConfig, Augmenter
from echoseek.data.dataset import iter_batches
from echoseek.data.views import frame_batch, row_numbers
from echoseek.jobs import ingest, phantom, pretrain
from echoseek.models import build_backbone, build_method
from echoseek.training import param_groups, scaled_lr, ssl_step, train_epoch, two_view_inputs


def prepare(work: Path, frames: int) -> Path:
    phantom.run(phantom.Config(output=str(work / "raw"), frames=frames, height=64, width=64))
    ingest.run(
        ingest.Config(
            input=str(work / "raw" / "dataset.mat"),
            output=str(work / "ds"),
            frame_axis=2,
            shard_size=64,
        )
    )
    return work / "ds"


def plain_loop(dataset: Path, size: int, batch: int, epochs: int) -> float:
    """img/s of the last epoch of a single-process loop over the same data."""
    torch.manual_seed(0)
    augment = AugmentConfig(size=size)
    rows = row_numbers(str(dataset))
    method = build_method("simsiam", build_backbone("resnet18", 1, True, "avg"))
    groups = param_groups(method, fixed_lr_prefixes=("predictor",), weight_decay=1e-4)
    lr = scaled_lr(0.05, batch)
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9)

    def batches() -> Any:
        for table in iter_batches(dataset, batch_size=batch):
            cols = {name: np.array(table.column(name).to_pylist(), dtype=object)
                    for name in ("id", "image", "label")}  # fmt: skip
            if len(cols["id"]) < batch:
                continue  # drop_last, as the job does
            index = np.array([rows[str(i)] for i in cols["id"]])
            out = frame_batch(cols, channels=1, shape=(64, 64), index=index)
            yield {k: torch.from_numpy(v) for k, v in out.items()}

    rate = 0.0
    for epoch in range(epochs):
        stats = train_epoch(
            model=method,
            batches=batches(),
            optimizer=optimizer,
            step_fn=ssl_step,
            lr_at=lambda step: lr,
            start_step=epoch * 1000,
            device=torch.device("cpu"),
            prepare=two_view_inputs(Augmenter(augment, seed=epoch)),
        )
        rate = stats.images_per_s
    return rate


def ray_job(dataset: Path, work: Path, size: int, batch: int, epochs: int, workers: int) -> Any:
    """(img/s of the last epoch, aggregated over workers; data-wait fraction; wall seconds)."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{work / 'mlflow.db'}"
    cfg = load_config(
        pretrain.Config,
        None,
        [
            f"input={dataset}",
            f"output={work / f'model{workers}'}",
            f"epochs={epochs}",
            f"batch_size={batch}",
            f"augment.size={size}",
            "optim.warmup_epochs=0",
            f"scale.num_workers={workers}",
            "scale.use_gpu=false",
            f"run.name=bench-{workers}-{time.time_ns()}",
            f"run.storage_path={work / 'ray'}",
            f"run.tracking_uri={store}",
            "probe_size=64",
        ],
    )
    start = time.perf_counter()
    out = pretrain.run(cfg)
    wall = time.perf_counter() - start
    client = MlflowClient(store)
    rate = client.get_metric_history(out["run_id"], "images_per_s")[-1].value * workers
    wait = client.get_metric_history(out["run_id"], "data_wait_fraction")[-1].value
    return rate, wait, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = prepare(work, args.frames)
        plain = plain_loop(dataset, args.size, args.batch, args.epochs)
        one = ray_job(dataset, work, args.size, args.batch, args.epochs, 1)
        two = ray_job(dataset, work, args.size, args.batch, args.epochs, 2)
    print(
        f"\nSimSiam ResNet-18 small stem, {args.frames} frames, {args.size} px, batch "
        f"{args.batch} per worker, last of {args.epochs} epochs, CPU, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}\n"
    )
    print("| path | img/s | ratio vs plain | data-wait share | job wall s |")
    print("|---|---:|---:|---:|---:|")
    print(f"| plain PyTorch loop (decode + augment inline) | {plain:.1f} | 1.00 | - | - |")
    for name, (rate, wait, wall) in (("Ray Train, 1 worker", one), ("Ray Train, 2 workers", two)):
        print(f"| {name} | {rate:.1f} | {rate / plain:.2f} | {wait:.1%} | {wall:.0f} |")
    print(f"\n2-worker scaling vs 1 worker: {two[0] / one[0]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
