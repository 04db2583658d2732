"""Embedding throughput: the Ray Data embed job vs a plain torch loop over the same data.

    .venv/bin/python bench/bench_embed.py [--frames 5000] [--size 64] [--batch 64]

Both sides embed the same phantom dataset with the same saved model (ResNet-18, small stem,
128-d head) and batch size. The plain loop reads the Parquet shards with pyarrow, decodes PNGs
and calls the model in this process; the job streams through Ray Data's actor pool and writes
the vectors artifact, with the job's default actor pool (one actor per free CPU, one torch
thread each) and with one actor holding every CPU (as many torch threads as the loop). Ray is
started before timing (cluster start-up is not embedding work). The job is timed end to end
(actor start-up, model load and the vectors artifact write included) and, separately, as its
fixed start cost (until the first embedded batch reaches the driver) and its steady rate after
that, each as a ratio to the plain loop (target >= 0.9).
The dataset is ingested in shards of ``SHARD`` rows.
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

import numpy as np
import torch

from echoseek.data.dataset import decode_png, iter_batches
from echoseek.embedding import ModelEmbedder
from echoseek.jobs import embed, ingest, phantom
from echoseek.models.artifact import ModelMeta, build_model, save_model

SHARD = 128  # rows per dataset shard = Ray Data block


def prepare(work: Path, frames: int, size: int) -> tuple[Path, Path]:
    """A phantom dataset and a randomly initialised saved model."""
    cfg = phantom.Config(output=str(work / "raw"), frames=frames, height=size, width=size)
    phantom.run(cfg)
    ingest.run(
        ingest.Config(
            input=str(work / "raw" / "dataset.mat"),
            output=str(work / "ds"),
            frame_axis=2,
            shard_size=SHARD,
        )
    )
    torch.manual_seed(0)
    meta = ModelMeta(small_stem=size <= 64, input_size=(size, size), in_channels=1)
    save_model(build_model(meta), work / "model", meta)
    return work / "ds", work / "model"


def plain_loop(dataset: Path, model: Path, batch: int) -> float:
    """Images per second of decode + embed in this process."""
    embedder = ModelEmbedder(str(model), device="cpu")
    start, count = time.perf_counter(), 0
    for b in iter_batches(dataset, batch, columns=["image"]):
        vectors = embedder([decode_png(x) for x in b.column(0).to_pylist()])
        count += len(vectors)
    return count / (time.perf_counter() - start)


def ray_job(dataset: Path, model: Path, out: Path, batch: int, whole: bool) -> dict[str, float]:
    """End-to-end and steady images per second of the embed job, and its start cost in
    seconds: with the job's default pool (``whole=False``: one actor per free CPU, one torch
    thread each), or one actor holding every CPU with as many torch threads as the loop."""
    whole_cpu = {
        "actors": 1,
        "actor_cpus": float(os.cpu_count() or 1),
        "torch_threads": torch.get_num_threads(),
    }
    cfg = embed.Config(
        input=str(dataset),
        model=str(model),
        output=str(out),
        overwrite=True,
        **(whole_cpu if whole else {}),  # type: ignore[arg-type]
    )
    start = time.perf_counter()
    result = embed.run(cfg)
    return {
        "end_to_end": float(result["count"]) / (time.perf_counter() - start),
        "steady": float(result["steady_images_per_s"]),
        "start_s": float(result["start_s"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    pools = {"default pool (one actor per CPU)": False, "one actor with every CPU": True}
    with tempfile.TemporaryDirectory() as tmp:
        dataset, model = prepare(Path(tmp), args.frames, args.size)
        plain: list[float] = []
        job: dict[str, list[dict[str, float]]] = {name: [] for name in pools}
        for _ in range(args.reps):  # alternate so drift hits every side
            plain.append(plain_loop(dataset, model, args.batch))
            for name, whole in pools.items():
                job[name].append(ray_job(dataset, model, Path(tmp) / "vectors", args.batch, whole))
    p = float(np.median(plain))
    print(
        f"\n{args.frames} frames, {args.size} px, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs\n"
    )
    print("| path | img/s (median of reps) | ratio vs plain | start s |")
    print("|---|---:|---:|---:|")
    print(f"| plain torch loop | {p:.1f} | 1.00 | - |")
    for pool, runs in job.items():
        j, steady, start_s = (
            float(np.median([r[k] for r in runs])) for k in ("end_to_end", "steady", "start_s")
        )
        print(f"| Ray Data embed job, {pool}, end to end | {j:.1f} | {j / p:.2f} | {start_s:.1f} |")
        print(f"| Ray Data embed job, {pool}, after the first batch | {steady:.1f} "
              f"| {steady / p:.2f} | - |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
