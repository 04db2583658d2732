"""Per-epoch evaluation input: a Ray Data pipeline per epoch, the same pipeline materialized once,
and the view built in the driver (``eval_view``, what the jobs use).

    .venv/bin/python bench/bench_eval_views.py [--frames 600] [--size 64] [--epochs 5]

Pretraining's RankMe probe and val mAP, and fine-tuning's val mAP, read the same evaluation
view (decoded uint8 frames; the worker resizes and normalises them on its device) every
epoch. Lazy, each epoch starts a Ray Data execution (file listing, read and map tasks) and
decodes every image again; materialized, the view is decoded once before training and each
epoch reads its blocks from the object store. ``eval_view`` decodes the rows in the driver
process and puts one
Arrow table in the object store, so it starts no Ray task (no file-listing task of a whole
CPU, no map-task processes importing torch). Every side iterates in one Ray session with the
batch size the training loops use (64); one-time costs are counted in the totals. The dataset
is a phantom ingested in shards of ``SHARD`` rows.
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

from functools import partial

from echoseek.data.augment import AugmentConfig
from echoseek.data.dataset import read_dataset, read_descriptor
from echoseek.data.frames import frame_shape
from echoseek.data.views import eval_view, frame_batch
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


def start_ray() -> None:
    """A quiet local Ray of this machine's CPUs, with the project's raylet settings."""
    import ray

    from echoseek.ray_session import local_system_config, quiet_ray_data

    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        _system_config=local_system_config(),
    )
    quiet_ray_data()


def eval_dataset(path: str, augment: AugmentConfig) -> Any:
    """The evaluation view as a lazy Ray Data pipeline (map tasks of 0.25 CPU)."""
    shape = frame_shape(read_descriptor(path), augment.size)
    decode = partial(frame_batch, channels=augment.in_channels, shape=shape)
    return read_dataset(path).map_batches(
        decode, batch_size=64, batch_format="numpy", num_cpus=0.25
    )


def read_once(ds: Any) -> int:
    """Rows of one pass over ``ds`` in the loops' batch size."""
    return sum(len(b["image"]) for b in ds.iter_torch_batches(batch_size=64))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    start_ray()
    augment = AugmentConfig(size=args.size)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = prepare(Path(tmp), args.frames, args.size)
        read_once(eval_dataset(str(dataset), augment))  # warm the worker pool
        lazy = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            rows = read_once(eval_dataset(str(dataset), augment))
            lazy.append(time.perf_counter() - start)
        sides = {}
        for name, build in (
            ("materialized pipeline", lambda: eval_dataset(str(dataset), augment).materialize()),
            ("eval_view (driver)", lambda: eval_view(str(dataset), 1, augment.size)),
        ):
            start = time.perf_counter()
            view = build()
            once = time.perf_counter() - start
            epochs = []
            for _ in range(args.epochs):
                start = time.perf_counter()
                assert read_once(view) == rows
                epochs.append(time.perf_counter() - start)
            sides[name] = (once, epochs)
    lazy_total = sum(lazy)
    print(f"\n{rows} frames, {args.size} px, {args.epochs} epochs, {os.cpu_count()} CPUs\n")
    print("| evaluation input | built once s | s per epoch (median) | total s | ratio vs lazy |")
    print("|---|---:|---:|---:|---:|")
    median = sorted(lazy)[len(lazy) // 2]
    print(f"| lazy pipeline per epoch | - | {median:.2f} | {lazy_total:.1f} | 1.00 |")
    for name, (once, epochs) in sides.items():
        total = once + sum(epochs)
        print(
            f"| {name} | {once:.1f} | {sorted(epochs)[len(epochs) // 2]:.2f} "
            f"| {total:.1f} | {total / lazy_total:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
