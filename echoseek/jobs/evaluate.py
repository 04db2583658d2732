"""Score retrieval on a labelled dataset: AP of a query image, leave-one-out mAP, P@K, lift@K.

    echoseek evaluate input=work/dataset query=work/phantom/invivo.png output=work/eval
    python -m echoseek.jobs.evaluate CONFIG.yaml

``model=pixels`` (the default) is the raw-pixel baseline (:mod:`echoseek.baseline`); a model
directory or `models:/NAME/VERSION` URI embeds with that model. Writes
``metrics.json`` into ``output``. Latency is the wall time of one query end to end (embed the
image, score every corpus vector, rank), median over ``latency_repeats`` runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.data.dataset import decode_png, read_descriptor
from echoseek.embedding import build_embedder
from echoseek.errors import ConfigError, InputError
from echoseek.evaluation.corpus import embed_dataset, first_image, measure_latency
from echoseek.evaluation.retrieval import label_summary, leave_one_out_metrics, query_metrics
from echoseek.ingest.folders import MAX_PIXELS, load_image
from echoseek.jobs.runner import run_job
from echoseek.storage import check_output_dir, make_dirs, write_json_atomic


@dataclass
class Config:
    """Options of ``echoseek evaluate``."""

    input: str = ""  # dataset directory
    output: str = "work/eval"
    query: str | None = None  # external query image (e.g. invivo.png)
    model: str = "pixels"  # "pixels" (raw-pixel baseline), a model dir or models:/NAME/VER
    pixel_size: int = 32  # baseline downsampling (pixel_size x pixel_size)
    positive_label: int | None = 1  # None: every labelled item queries its own class
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])
    batch_size: int = 256
    latency_repeats: int = 20
    max_pixels: int = MAX_PIXELS  # a larger query image is refused
    tracking_uri: str = ""  # MLflow store of a models:/ model (default: $MLFLOW_TRACKING_URI)

    def __post_init__(self) -> None:
        if any(k <= 0 for k in self.ks):
            raise ConfigError(f"ks must be positive, got {self.ks}")
        if self.pixel_size <= 0:
            raise ConfigError(f"pixel_size must be positive, got {self.pixel_size}")
        if self.batch_size <= 0 or self.latency_repeats <= 0 or self.max_pixels <= 0:
            raise ConfigError("batch_size, latency_repeats and max_pixels must be positive")


@dataclass
class Measured:
    """An evaluation and what it was computed from: the corpus ids, L2-normalised vectors
    (N, D) and labels (-1 unlabelled), and the query's vector when a query image was given."""

    result: dict[str, Any]
    ids: list[str]
    vectors: np.ndarray
    labels: np.ndarray
    query: np.ndarray | None


def measure(cfg: Config) -> Measured:
    """Embed the dataset (and the query) with ``cfg.model`` and score retrieval."""
    if not cfg.input:
        raise ConfigError("input is required (a dataset directory from echoseek ingest)")
    if cfg.query is not None and cfg.positive_label is None:
        raise ConfigError("query= needs positive_label (the class the query belongs to)")
    desc = read_descriptor(cfg.input)
    query_image = None if cfg.query is None else load_image(cfg.query, max_pixels=cfg.max_pixels)
    embed = build_embedder(cfg.model, cfg.pixel_size, tracking=cfg.tracking_uri)
    ids, vectors, labels = embed_dataset(cfg.input, embed, cfg.batch_size)
    if (labels < 0).all():
        raise InputError(f"{cfg.input}: dataset has no labels; evaluate needs labelled items")
    ks = [k for k in cfg.ks if k <= len(ids)]
    result: dict[str, Any] = {
        "model": cfg.model,
        "dataset": {"path": str(cfg.input), "sha256": desc["sha256"]},
        **label_summary(labels, cfg.positive_label),
        "leave_one_out": leave_one_out_metrics(vectors, labels, ks, cfg.positive_label),
        "config": asdict(cfg),
    }
    query = None
    if query_image is not None:
        query = embed([query_image])[0]
        result["query"] = query_metrics(query, vectors, labels == cfg.positive_label, ks)
    probe = query_image if query_image is not None else decode_png(first_image(cfg.input))
    result["latency"] = measure_latency(probe, embed, vectors, cfg.latency_repeats)
    return Measured(result, ids, vectors, labels, query)


def run(cfg: Config) -> dict[str, Any]:
    """Evaluate and write ``metrics.json``; returns the metrics."""
    check_output_dir(cfg.output)
    result = measure(cfg).result
    make_dirs(Path(cfg.output))
    write_json_atomic(Path(cfg.output) / "metrics.json", result)
    result["output"] = str(Path(cfg.output) / "metrics.json")
    return result


def summarize(m: dict[str, Any]) -> str:
    """Short terminal summary."""
    loo = m["leave_one_out"]
    lines = [
        f"{m['items']} items, {m['positives']} positives ({m['positive_ratio']:.1%}), "
        f"model={m['model']}",
        f"leave-one-out mAP {loo['map']:.3f} over {int(loo['num_queries'])} queries",
    ]
    if "query" in m:
        q = m["query"]
        lines.append(
            f"query AP {q['ap']:.3f}  P@10 {q.get('p@10', float('nan')):.2f}  "
            f"lift@10 {q.get('lift@10', float('nan')):.2f}"
        )
    lines.append(f"latency {m['latency']['median_ms']:.2f} ms per query (median)")
    lines.append(f"wrote {m['output']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek evaluate") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
