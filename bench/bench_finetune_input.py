"""Fine-tuning input: data wait and worker memory at 1x and 20x the demo's dataset.

    .venv/bin/python bench/bench_finetune_input.py [--scale 20] [--size 32] [--epochs 1]

Two phantom cines (the demo's 445 frames, and ``scale`` times as many), ingested and
fine-tuned with the same settings (2 Ray Train CPU workers, batch 32 per worker, m = 8,
ResNet-18 small stem at ``size`` px, whole backbone trained, 20 % held out). The input streams
(:mod:`echoseek.data.labelled`: a labels index per worker, images read from Parquet row groups
on demand, decoded and augmented a few batches ahead), so the Train worker's peak RSS should
not grow with the dataset, and the step should rarely wait for data. Reported per run, from
rank 0's MLflow metrics of the last epoch: the data-wait share of step time, img/s, and the
worker's peak RSS, next to the dataset's size on disk (what a worker holding the images, as
before, would have added). The 1x dataset also runs ``scale`` times the epochs, so that one
pair compares equal work on 1/20 of the data (peak RSS also grows with the steps taken).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import torch

from echoseek.config import load_config
from echoseek.jobs import finetune, ingest, phantom
from echoseek.models.artifact import ModelMeta, build_model, save_model


def cine(work: Path, frames: int, seed: int) -> Path:
    """A phantom cine with its phase classes, ingested (once per size); returns the dataset
    dir."""
    if (work / f"ds-{frames}" / "dataset.json").exists():
        return work / f"ds-{frames}"
    raw = work / f"raw-{frames}"
    phantom.run(phantom.Config(output=str(raw), frames=frames, seed=seed))
    ingest.run(
        ingest.Config(
            input=str(raw / "dataset.mat"),
            labels=str(raw / "dataset_phase_labels.csv"),
            output=str(work / f"ds-{frames}"),
            frame_axis=2,
        )
    )
    return work / f"ds-{frames}"


def run(work: Path, dataset: Path, model: Path, epochs: int, name: str) -> dict[str, float]:
    """Fine-tune and return rank 0's last-epoch metrics from MLflow."""
    from mlflow.tracking import MlflowClient

    tracking = f"sqlite:///{work / 'mlflow.db'}"
    cfg = load_config(
        finetune.Config,
        None,
        [
            f"input={dataset}",
            f"pretrained={model}",
            f"output={work / ('model-' + name)}",
            f"epochs={epochs}",
            "batch_size=32",
            "loss.m=8",
            "head.trainable=all",
            "scale.num_workers=2",
            "scale.use_gpu=false",
            f"run.name={name}",
            f"run.storage_path={work / 'ray'}",
            f"run.tracking_uri={tracking}",
        ],
    )
    out = finetune.run(cfg)
    metrics = MlflowClient(tracking).get_run(out["run_id"]).data.metrics
    return {**metrics, "seconds": out["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=445)
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        meta = ModelMeta(small_stem=True, input_size=(args.size, args.size), in_channels=1)
        save_model(build_model(meta), work / "model", meta)
        # 1x for as many steps as 20x takes (scale x the epochs): equal work, 1/20 of the data
        for scale, epochs in (
            (1, args.epochs),
            (1, args.epochs * args.scale),
            (args.scale, args.epochs),
        ):
            dataset = cine(work, args.frames * scale, seed=scale)
            mib = sum(f.stat().st_size for f in dataset.glob("*.parquet")) / 2**20
            m = run(work, dataset, work / "model", epochs, f"x{scale}-e{epochs}")
            rows.append((scale, epochs, args.frames * scale, mib, m))
    print(
        f"\nfine-tune, 2 CPU workers, batch 32/worker, m 8, {args.size} px, "
        f"{args.epochs} epoch(s), {os.cpu_count()} CPUs\n"
    )
    print(
        "| dataset | epochs | frames | on disk MiB | data-wait share | img/s "
        "| worker peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for scale, epochs, frames, mib, m in rows:
        print(
            f"| {scale}x demo | {epochs} | {frames} | {mib:.1f} | {m['data_wait_fraction']:.1%} "
            f"| {m['images_per_s']:.1f} | {m['peak_rss_mb']:.0f} |"
        )
    (*_, mib1, same), (*_, mib20, big) = rows[1], rows[2]
    print(
        f"\nat equal steps, peak RSS {big['peak_rss_mb'] - same['peak_rss_mb']:+.0f} MiB for "
        f"{mib20 - mib1:.0f} MiB more data on disk "
        f"(ratio {big['peak_rss_mb'] / same['peak_rss_mb']:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
