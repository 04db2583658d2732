"""Embed a dataset with a model into a vectors artifact, streaming with Ray Data.

    echoseek embed input=work/dataset model=work/model output=work/vectors
    echoseek embed input=/mnt/shared/dataset model=models:/echoseek/3 output=/mnt/shared/vectors
    python -m echoseek.jobs.embed CONFIG.yaml

The dataset's Parquet shards are read lazily, PNG decoding and the model run in an actor pool
(``map_batches`` with one model per actor; a GPU per actor when the cluster has GPUs, AMP on
GPU), and each actor writes the vectors of the row groups it embeds as part files of
``output``'s staging directory (which every node must reach: the shared mount on a cluster);
the driver only lists the parts in the descriptor, then renames the staging directory into
place. No vector passes through the driver. ``input`` and ``output`` may be ``s3://`` or
``gs://`` URIs: actors then upload their parts and the descriptor is written last
(:func:`echoseek.object_store.staged_artifact`).
``model=pixels`` embeds with the raw-pixel baseline. Reports images per second.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from echoseek.data.dataset import read_descriptor, shard_paths
from echoseek.data.vectors import finish_vectors
from echoseek.embedding import ModelEmbedder, build_embedder
from echoseek.embedding.stream import StreamClock, calls_per_actor, embedded_parts
from echoseek.errors import ConfigError
from echoseek.jobs.runner import run_job
from echoseek.model_ref import ModelRef
from echoseek.object_store import check_location, staged_artifact
from echoseek.progress import ProgressBar
from echoseek.ray_session import cluster_has_gpus, ensure_ray


@dataclass
class Config:
    """Options of ``echoseek embed``."""

    input: str = ""  # dataset directory
    output: str = "work/vectors"
    model: str = "pixels"  # model dir, models:/NAME/VERSION, runs:/ID/PATH, or pixels
    pixel_size: int = 32  # for model=pixels
    actors: int = 0  # actor pool size (a model replica each); 0: one per GPU, else per actor_cpus
    actor_cpus: float = 1.0  # CPUs reserved per actor when it runs on CPU
    torch_threads: int = 0  # intra-op threads per actor; 0: Ray's default (= reserved CPUs)
    use_gpu: bool | None = None  # None: a GPU per actor when the cluster has GPUs
    amp: bool = True  # autocast on GPU
    overwrite: bool = False
    tracking_uri: str = ""  # MLflow store for models:/ and runs:/ URIs; default: see tracking

    def __post_init__(self) -> None:
        if self.actors < 0 or self.actor_cpus <= 0:
            raise ConfigError("actor_cpus must be positive, actors >= 0")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads: must be >= 0, got {self.torch_threads}")


def run(cfg: Config) -> dict[str, Any]:
    """Embed ``cfg.input`` with ``cfg.model`` into ``cfg.output``; returns the descriptor."""
    if not cfg.input:
        raise ConfigError("input is required (a dataset directory from echoseek ingest)")
    check_location(cfg.input, "input")
    check_location(cfg.output, "output", output=True)
    desc = read_descriptor(cfg.input)
    shard_paths(cfg.input)  # shard checksums verified here, before Ray reads them
    # loaded once here (fail fast, learn dim); the actors get the weights by object store
    probe = build_embedder(cfg.model, cfg.pixel_size, "cpu", tracking=cfg.tracking_uri)
    ensure_ray()
    gpu = cluster_has_gpus() if cfg.use_gpu is None else cfg.use_gpu
    clock, bar = StreamClock(), ProgressBar("embed", int(desc["count"]))
    with staged_artifact(cfg.output, overwrite=cfg.overwrite) as staged:
        parts = embedded_parts(
            cfg.input,
            probe if isinstance(probe, ModelEmbedder) else None,
            staged.parts,
            pixel_size=cfg.pixel_size,
            actors=cfg.actors or pool_size(gpu, cfg.actor_cpus),
            resources={"num_gpus": 1} if gpu else {"num_cpus": cfg.actor_cpus},
            amp=cfg.amp,
            threads=cfg.torch_threads,
            calls=calls_per_actor(*cluster_cpus_gpus(gpu)),
        )
        files = sorted(clock.wrap(parts, bar), key=lambda p: p.pop("part"))
        out = finish_vectors(
            staged.root,
            [{**f, "file": staged.prefix + f["file"]} for f in files],
            dim=probe.dim,
            model_uri=probe.uri,
            extra={
                "dataset": str(cfg.input),
                "dataset_sha256": desc["sha256"],
                "model_tracking_uri": ModelRef.parse(probe.uri).store(cfg.tracking_uri),
            },
        )
    bar.close()
    seconds = time.perf_counter() - clock.start
    return {
        **out,
        **clock.summary(),
        "output": cfg.output,
        "seconds": seconds,
        "images_per_s": out["count"] / max(seconds, 1e-9),
        "device": "gpu" if gpu else "cpu",
    }


def pool_size(gpu: bool, actor_cpus: float) -> int:
    """Actors when ``actors=0``: one per GPU free in the cluster now, else as many as its free
    CPUs hold at ``actor_cpus`` each, at least one (on 2 cores, one actor per CPU embedded at
    1.15x a plain loop after the first batch and one actor with both CPUs at 0.84x;
    BENCHMARKS.md, "Embedding throughput"). Free, not total: a pool larger than the free
    resources would wait for them.
    """
    import ray

    free = ray.available_resources()
    if gpu:
        return max(1, int(free.get("GPU", 0)))
    return max(1, int(free.get("CPU", 0) // actor_cpus))


def cluster_cpus_gpus(gpu: bool) -> tuple[float, float]:
    """The cluster's CPUs, and its GPUs when the actors take one each (else 0)."""
    import ray

    total = ray.cluster_resources()
    return total.get("CPU", 1.0), total.get("GPU", 0.0) if gpu else 0.0


def summarize(s: dict[str, Any]) -> str:
    """One line for the terminal."""
    return (
        f"embedded {s['count']} images (dim {s['dim']}, model {s['model_uri']}) into "
        f"{s['output']} in {s['seconds']:.1f} s ({s['images_per_s']:.0f} img/s on {s['device']}; "
        f"{s['start_s']:.1f} s to the first batch, then {s['steady_images_per_s']:.0f} img/s)"
    )


def main(argv: Sequence[str] | None = None, prog: str = "echoseek embed") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
