"""Build a sharded faiss index version from vectors and publish it atomically.

    echoseek index build input=work/vectors output=work/index
    echoseek index build indexing/local.yaml input=embeddings.npy build.num_shards=4
    python -m echoseek.jobs.index_build indexing/cluster.yaml

``input`` is a vectors artifact (``echoseek embed``), a ``.npy`` file or a folder of
``.npy``/``.parquet`` files (Parquet at an ``s3://``/``gs://`` URI). ``output`` is the index
root (a path or URI): the new version appears as ``output/<version>/`` and ``output/LATEST``
points at it, or nothing appears if the build fails. Index parameters follow
:mod:`echoseek.index.params` unless set under ``index.*``; the stages run as placed Ray tasks
(a local Ray instance unless ``RAY_ADDRESS`` or an initialised Ray says otherwise); ``--json``
adds ``shard_fills``. Before publishing, the build measures the smallest nprobe reaching
recall@10 ≥ ``build.target_recall`` (0.9; with exact re-rank, on ``build.calibration_queries``
sampled vectors) and makes it the version's default, so the version searches well without
``index eval``; ``index.nprobe=N`` or ``build.target_recall=null`` keep the rule's nprobe
instead. Flat (exact) indexes skip the measurement.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from echoseek.data.vectors import open_vectors
from echoseek.errors import ConfigError
from echoseek.index.build import ROWS_PER_SHARD, build_index, build_summary, summary_text
from echoseek.index.params import (
    FLAT_THRESHOLD,
    MAX_TRAIN,
    NLIST_FACTOR,
    TRAIN_PER_LIST,
    choose_params,
)
from echoseek.index.recall import CALIBRATION_QUERIES, CALIBRATION_TARGET
from echoseek.index.tasks import peak_rss_mib
from echoseek.jobs.runner import run_job
from echoseek.model_ref import ModelRef
from echoseek.object_store import check_location


@dataclass
class IndexOptions:
    """``choose_params`` keywords; 0 / empty means "choose by the rules" (index.params)."""

    kind: Literal["auto", "flat", "ivfpq"] = "auto"
    metric: Literal["ip", "l2"] = "ip"
    normalize: bool | None = None  # None: true for ip (cosine), false for l2
    factory: str = ""  # an explicit faiss factory string overrides the rules
    nlist: int = 0
    m: int = 0
    nbits: int = 8
    opq: bool = False
    nprobe: int = 0
    train_size: int = 0
    memory_budget_bytes: int = 0
    flat_threshold: int = FLAT_THRESHOLD
    nlist_factor: float = NLIST_FACTOR
    train_per_list: int = TRAIN_PER_LIST
    max_train: int = MAX_TRAIN


@dataclass
class BuildOptions:
    """How the build runs."""

    num_shards: int = 0  # 0: ceil(N / rows_per_shard)
    rows_per_shard: int = ROWS_PER_SHARD
    cpus_per_shard: float = 1.0
    train_cpus: float = 1.0  # the k-means task's CPUs (its OpenMP threads)
    batch_size: int = 1 << 15
    seed: int = 0
    use_gpu: bool | None = None  # None: train on GPU when faiss sees one
    use_ray: bool = True  # false: fill shards one after another in this process
    retention: int = 3  # versions kept under the index root (0 keeps all)
    target_recall: float | None = CALIBRATION_TARGET  # null: keep the rule's nprobe
    calibration_queries: int = CALIBRATION_QUERIES

    def __post_init__(self) -> None:
        for name in ("num_shards", "retention"):
            if getattr(self, name) < 0:
                raise ConfigError(f"build.{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("rows_per_shard", "batch_size", "cpus_per_shard", "train_cpus",
                     "calibration_queries"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"build.{name}: must be positive, got {getattr(self, name)}")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise ConfigError(f"build.target_recall: must be in (0, 1], got {self.target_recall}")


@dataclass
class Config:
    """Options of ``echoseek index build``."""

    input: str = ""
    output: str = "work/index"
    model_uri: str = ""  # recorded in the manifest; default: the vectors artifact's
    tracking_uri: str = ""  # MLflow registry of a models:/NAME@ALIAS model_uri (pinned)
    index: IndexOptions = field(default_factory=IndexOptions)
    build: BuildOptions = field(default_factory=BuildOptions)


def run(cfg: Config) -> dict[str, Any]:
    """Build and publish one index version; returns a summary."""
    if not cfg.input:
        raise ConfigError("input is required (a vectors artifact, a .npy file or a folder)")
    if not cfg.output:
        raise ConfigError("output is required (the index root directory)")
    check_location(cfg.input, "input")
    check_location(cfg.output, "output", output=True)
    start = time.perf_counter()
    source = open_vectors(cfg.input)
    model = ModelRef.parse(cfg.model_uri).pinned(cfg.tracking_uri) if cfg.model_uri else None
    params = choose_params(source.count, source.dim, **dataclasses.asdict(cfg.index))
    b = cfg.build
    manifest = build_index(
        source,
        cfg.output,
        params,
        num_shards=b.num_shards,
        rows_per_shard=b.rows_per_shard,
        batch_size=b.batch_size,
        seed=b.seed,
        use_gpu=b.use_gpu,
        use_ray=b.use_ray,
        cpus_per_shard=b.cpus_per_shard,
        train_cpus=b.train_cpus,
        retention=b.retention,
        model_uri=model.uri if model else "",
        model_tracking_uri=model.store(cfg.tracking_uri) if model else "",  # "": the vectors' own
        target_recall=None if cfg.index.nprobe else b.target_recall,
        calibration_queries=b.calibration_queries,
    )
    seconds = time.perf_counter() - start
    summary = {"output": cfg.output, **build_summary(manifest, params), "seconds": seconds}
    return {**summary, "driver_peak_rss_mib": peak_rss_mib()}


def main(argv: Sequence[str] | None = None, prog: str = "echoseek index build") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summary_text)


if __name__ == "__main__":
    sys.exit(main())
