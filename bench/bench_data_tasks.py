"""Pretraining's two-view stream: Ray Data's own task count vs the job's cap (data_task_limit).

    .venv/bin/python bench/bench_data_tasks.py [--frames 480] [--size 32] [--epochs 3]

The stream (``echoseek.data.views.frame_dataset``) maps CPU tasks of ``data_cpus`` = 0.25
each. Left alone, Ray Data runs as many at once as the fractions allow, and each one is a new
worker process that imports torch before it decodes anything; the job caps them at the CPUs
left after the Train workers' reservations (``scale.data_tasks``, default
:func:`echoseek.training.trainer.data_task_limit`). Each side iterates the whole stream once on
the driver, in a fresh local Ray session of this machine's CPUs (no idle worker carried over),
alternating sides over ``--rounds`` rounds; the table gives the median.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from bench_eval_views import prepare, start_ray  # phantom shards, a quiet local Ray

from echoseek.data.augment import AugmentConfig
from echoseek.data.views import frame_dataset
from echoseek.training.options import ScaleOptions
from echoseek.training.trainer import data_task_limit


def one_pass(dataset: Path, augment: AugmentConfig, epochs: int, tasks: int | None) -> tuple:
    """(seconds to the first batch, seconds for the whole stream, batches) in a fresh Ray."""
    import ray

    start_ray()
    try:
        start, first, batches = time.perf_counter(), 0.0, 0
        stream = frame_dataset(
            str(dataset), 1, augment.size, batch_size=32, num_cpus=0.25, epochs=epochs,
            tasks=tasks,
        )  # fmt: skip
        for _ in stream.iter_batches(batch_size=32):
            first = first or time.perf_counter() - start
            batches += 1
        return first, time.perf_counter() - start, batches
    finally:
        ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=480)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    cap = data_task_limit(ScaleOptions(num_workers=2, cpus_per_worker=0.5), cpus)
    augment = AugmentConfig(size=args.size)
    times: dict[str, list[tuple]] = {"uncapped": [], "capped": []}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = prepare(Path(tmp), args.frames, args.size)
        for _ in range(args.rounds):
            times["uncapped"].append(one_pass(dataset, augment, args.epochs, None))
            times["capped"].append(one_pass(dataset, augment, args.epochs, cap))
    print(f"\n{args.frames} frames, {args.size} px, {args.epochs} passes, {cpus} CPUs;")
    print(f"tasks of 0.25 CPU; cap = {cap} (2 Train workers x 0.5 CPU reserved)\n")
    print("| map tasks at once | first batch s | whole stream s | ratio vs uncapped |")
    print("|---|---:|---:|---:|")
    base = sorted(t[1] for t in times["uncapped"])[args.rounds // 2]
    for side, label in (("uncapped", "Ray Data's choice"), ("capped", f"capped at {cap}")):
        first = sorted(t[0] for t in times[side])[args.rounds // 2]
        total = sorted(t[1] for t in times[side])[args.rounds // 2]
        print(f"| {label} | {first:.1f} | {total:.1f} | {total / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
