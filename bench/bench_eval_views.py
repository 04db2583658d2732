"""Per-epoch evaluation input: a lazy Ray Data pipeline per epoch vs one materialized view.

    .venv/bin/python bench/bench_eval_views.py [--frames 600] [--size 64] [--epochs 5]

Pretraining's RankMe probe and val mAP, and fine-tuning's val mAP, read the same evaluation
view (decode, resize, normalise; no random augmentation) every epoch. Lazy, each epoch starts
a Ray Data execution (file listing, read and map tasks) and transforms every image again;
materialized, the view is transformed once before training and each epoch reads its blocks
from the object store. Both sides iterate the same ``eval_dataset`` in one Ray session with
the batch size the training loops use (64); the materialized side's one-time cost is counted
in its total. The dataset is a phantom ingested in shards of ``SHARD`` rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from echoseek.data.augment import AugmentConfig
from echoseek.data.views import eval_dataset
from echoseek.jobs import ingest, phantom

SHARD = 128


def prepare(work: Path, frames: int, size: int) -> Path:
    """A phantom dataset of ``frames`` frames of ``size`` px."""
    phantom.run(phantom.Config(output=str(work / "raw"), frames=frames, height=size, width=size))
    cfg = ingest.Config(
        input=str(work / "raw" / "dataset.mat"),
        output=str(work / "ds"),
        frame_axis=2,
        shard_size=SHARD,
    )
    ingest.run(cfg)
    return work / "ds"


def read_once(ds: Any) -> int:
    """Rows of one pass over ``ds`` in the loops' batch size."""
    return sum(len(b["image"]) for b in ds.iter_torch_batches(batch_size=64))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    import ray

    from echoseek.ray_session import local_system_config, quiet_ray_data

    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        _system_config=local_system_config(),
    )
    quiet_ray_data()
    augment = AugmentConfig(size=args.size)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = prepare(Path(tmp), args.frames, args.size)
        read_once(eval_dataset(str(dataset), augment, num_cpus=0.25))  # warm the worker pool
        lazy = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            rows = read_once(eval_dataset(str(dataset), augment, num_cpus=0.25))
            lazy.append(time.perf_counter() - start)
        start = time.perf_counter()
        view = eval_dataset(str(dataset), augment, num_cpus=0.25).materialize()
        once = time.perf_counter() - start
        stored = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            assert read_once(view) == rows
            stored.append(time.perf_counter() - start)
    lazy_total, stored_total = sum(lazy), once + sum(stored)
    print(f"\n{rows} frames, {args.size} px, {args.epochs} epochs, {os.cpu_count()} CPUs\n")
    print("| evaluation input | s per epoch (median) | total s | ratio vs lazy |")
    print("|---|---:|---:|---:|")
    median = sorted(lazy)[len(lazy) // 2]
    print(f"| lazy pipeline per epoch | {median:.2f} | {lazy_total:.1f} | 1.00 |")
    print(
        f"| materialized once ({once:.1f} s) | {sorted(stored)[len(stored) // 2]:.2f} "
        f"| {stored_total:.1f} | {stored_total / lazy_total:.2f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
