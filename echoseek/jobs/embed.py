"""Embed a dataset with a model into a vectors artifact, streaming with Ray Data.

    echoseek embed input=work/dataset model=work/model output=work/vectors
    echoseek embed input=work/dataset model=models:/echoseek/3 output=s3://bucket/vectors
    python -m echoseek.jobs.embed CONFIG.yaml

The dataset's Parquet shards are read lazily, PNG decoding and the model run in an actor pool
(``map_batches`` with one model per actor; a GPU per actor when the cluster has GPUs, AMP on
GPU), and the driver streams the embedded batches into ``output`` (staging dir, then rename).
``model=pixels`` embeds with the raw-pixel baseline. Reports images per second.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from echoseek.data.dataset import decode_png, read_dataset, read_descriptor
from echoseek.data.vectors import VectorBatch, write_vectors
from echoseek.embedding import Embedder, build_embedder
from echoseek.errors import ConfigError
from echoseek.jobs.runner import run_job
from echoseek.ray_session import ensure_ray
from echoseek.tracking import is_mlflow_uri, tracking_uri


@dataclass
class Config:
    """Options of ``echoseek embed``."""

    input: str = ""  # dataset directory
    output: str = "work/vectors"
    model: str = "pixels"  # model dir, models:/NAME/VERSION, runs:/ID/PATH, or pixels
    pixel_size: int = 32  # for model=pixels
    batch_size: int = 64  # images per model call
    actors: int = 1  # size of the actor pool (one model replica each)
    actor_cpus: float = 1.0  # CPUs reserved per actor when it runs on CPU
    torch_threads: int = 0  # intra-op threads per actor; 0: Ray's default (= reserved CPUs)
    use_gpu: bool | None = None  # None: a GPU per actor when the cluster has GPUs
    amp: bool = True  # autocast on GPU
    overwrite: bool = False
    tracking_uri: str = ""  # MLflow store for models:/ and runs:/ URIs; default: see tracking

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.actors <= 0 or self.actor_cpus <= 0:
            raise ConfigError("batch_size, actors and actor_cpus must be positive")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads: must be >= 0, got {self.torch_threads}")


class EmbedBatch:
    """Ray Data callable class: one embedder per actor, numpy batches in and out."""

    def __init__(
        self, model: str, pixel_size: int, amp: bool, tracking: str = "", threads: int = 0
    ) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        if tracking:  # the driver's store, so every actor resolves MLflow URIs the same way
            os.environ["MLFLOW_TRACKING_URI"] = tracking
        self.embed: Embedder = build_embedder(model, pixel_size, amp=amp)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [decode_png(data) for data in batch["image"]]
        return {
            "id": batch["id"],
            "vector": self.embed(images),  # NxD float32, unit rows
            "label": batch["label"],
            "source": batch["source"],
            "frame_index": batch["frame_index"],
        }


def check_cpu_budget(actors: int, actor_cpus: float, cluster_cpus: float) -> None:
    """CPU actors must leave one CPU for Ray Data's Parquet read tasks, or nothing is read.

    Actors hold their CPUs for the whole job; a read task needs a whole CPU, so with
    ``actors · actor_cpus > cluster_cpus − 1`` the pipeline would wait forever.
    """
    if actors * actor_cpus > cluster_cpus - 1:
        raise ConfigError(
            f"actors={actors} x actor_cpus={actor_cpus:g} leaves less than 1 of the cluster's "
            f"{cluster_cpus:g} CPUs for reading the dataset; lower actor_cpus (threads per "
            "actor can still be raised with torch_threads)"
        )


def _gpus_available() -> bool:
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) > 0


def _to_vector_batch(batch: dict[str, np.ndarray]) -> VectorBatch:
    return VectorBatch(
        ids=[str(i) for i in batch["id"]],
        vectors=np.asarray(batch["vector"], dtype=np.float32),
        metadata={
            "label": _nullable_ints(batch["label"]),
            "source": [str(s) for s in batch["source"]],
            "frame_index": _nullable_ints(batch["frame_index"]),
        },
    )


def _nullable_ints(values: np.ndarray) -> list[int | None]:
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v) for v in values]


def run(cfg: Config) -> dict[str, Any]:
    """Embed ``cfg.input`` with ``cfg.model`` into ``cfg.output``; returns the descriptor."""
    import ray

    if not cfg.input:
        raise ConfigError("input is required (a dataset directory from echoseek ingest)")
    desc = read_descriptor(cfg.input)
    tracking = tracking_uri(cfg.tracking_uri) if is_mlflow_uri(cfg.model) else ""
    if tracking:
        os.environ["MLFLOW_TRACKING_URI"] = tracking
    probe = build_embedder(cfg.model, cfg.pixel_size, device="cpu")  # fail fast, learn dim
    ensure_ray()
    gpu = _gpus_available() if cfg.use_gpu is None else cfg.use_gpu
    if not gpu:
        check_cpu_budget(cfg.actors, cfg.actor_cpus, float(ray.cluster_resources().get("CPU", 0)))
    resources: dict[str, Any] = {"num_gpus": 1} if gpu else {"num_cpus": cfg.actor_cpus}
    embedded = read_dataset(cfg.input).map_batches(
        EmbedBatch,
        fn_constructor_kwargs={
            "model": cfg.model,
            "pixel_size": cfg.pixel_size,
            "amp": cfg.amp,
            "tracking": tracking,
            "threads": cfg.torch_threads,
        },
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        **resources,
    )
    start = time.perf_counter()

    def batches() -> Iterator[VectorBatch]:
        for batch in embedded.iter_batches(batch_size=cfg.batch_size, batch_format="numpy"):
            yield _to_vector_batch(batch)

    out = write_vectors(
        cfg.output,
        batches(),
        dim=probe.dim,
        model_uri=probe.uri,
        overwrite=cfg.overwrite,
        extra={"dataset": str(cfg.input), "dataset_sha256": desc["sha256"]},
    )
    seconds = time.perf_counter() - start
    return {
        **out,
        "output": cfg.output,
        "seconds": seconds,
        "images_per_s": out["count"] / max(seconds, 1e-9),
        "device": "gpu" if gpu else "cpu",
    }


def summarize(s: dict[str, Any]) -> str:
    """One line for the terminal."""
    return (
        f"embedded {s['count']} images (dim {s['dim']}, model {s['model_uri']}) into "
        f"{s['output']} in {s['seconds']:.1f} s ({s['images_per_s']:.0f} img/s on {s['device']})"
    )


def main(argv: Sequence[str] | None = None, prog: str = "echoseek embed") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
