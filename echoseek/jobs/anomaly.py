"""Anomaly scores of a dataset: each item's mean cosine distance to its k nearest normal items.

    echoseek anomaly input=work/test reference=work/normal output=work/anomaly
    echoseek anomaly input=work/test reference=work/index model=models:/enc/3 k=5 \\
        normal_labels=[0]

``reference`` holds the normal items: a dataset directory (embedded with ``model`` on the fly)
or an index root or version (its stored vectors; ``model`` then defaults to the index's own).
The score (:mod:`echoseek.evaluation.anomaly`) never counts an item itself when it is also in
the reference; its percentile is its place among the reference's own leave-one-out scores (a
seeded sample of ``reference_sample`` items). ``model=pixels`` is the raw-pixel baseline. Writes
``scores.parquet`` (id, score, percentile, label) into ``output`` and, when ``input`` has labels
and ``normal_labels`` says which are normal, ``metrics.json`` (``auroc``, ``ap`` and
``fpr_at_95_tpr`` with anomalies as positives) and ``score_histogram.png``; logged to MLflow.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echoseek.data.dataset import decode_png, iter_batches
from echoseek.errors import ConfigError, InputError
from echoseek.evaluation.anomaly import (
    detection_metrics,
    knn_scores,
    leave_one_out_scores,
    percentiles,
)
from echoseek.evaluation.normals import load_normals
from echoseek.jobs.runner import run_job
from echoseek.report.figures import score_histogram
from echoseek.storage import staged_dir
from echoseek.tracking import RunLogger

SCHEMA = pa.schema(
    [("id", pa.string()), ("score", pa.float64()), ("percentile", pa.float64()),
     ("label", pa.int64())]
)  # fmt: skip


@dataclass
class Config:
    """Options of ``echoseek anomaly``."""

    input: str = ""  # dataset directory: the items to score
    reference: str = ""  # the normal items: a dataset directory or an index root/version
    output: str = "work/anomaly"
    model: str = ""  # "" = the index's model (or pixels for a dataset reference); dir, models:/
    k: int = 5
    normal_labels: list[int] | None = None  # with labelled input: metrics.json
    reference_sample: int = 10_000  # reference items whose leave-one-out scores rank percentiles
    pixel_size: int = 32
    batch_size: int = 256
    overwrite: bool = False
    log: bool = True  # an MLflow run with the metrics and the output files
    tracking_uri: str = ""
    experiment: str = "echoseek-anomaly"

    def __post_init__(self) -> None:
        if self.k <= 0 or self.batch_size <= 0 or self.reference_sample <= 0:
            raise ConfigError("k, batch_size and reference_sample must be positive")


def run(cfg: Config) -> dict[str, Any]:
    """Score ``input`` against ``reference`` and publish the output directory; a summary."""
    if not cfg.input:
        raise ConfigError("input is required (a dataset directory from echoseek ingest)")
    if Path(cfg.output).is_dir() and any(Path(cfg.output).iterdir()) and not cfg.overwrite:
        raise InputError(f"{cfg.output}: output directory exists and is not empty (overwrite=true)")
    ref_ids, reference, embed = load_normals(
        cfg.reference, cfg.model, cfg.pixel_size, cfg.batch_size, cfg.tracking_uri
    )
    normal = leave_one_out_scores(reference, cfg.k, cfg.reference_sample)
    scores: list[np.ndarray] = []
    labels: list[int] = []
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as out:
        with pq.ParquetWriter(out / "scores.parquet", SCHEMA) as writer:
            for batch in iter_batches(cfg.input, cfg.batch_size, columns=["id", "image", "label"]):
                cols = batch.to_pydict()
                vectors = embed([decode_png(b) for b in cols["image"]])
                s = knn_scores(vectors, reference, cfg.k, [str(i) for i in cols["id"]], ref_ids)
                rows = {"id": cols["id"], "score": s, "percentile": percentiles(s, normal)}
                writer.write_table(pa.table({**rows, "label": cols["label"]}, schema=SCHEMA))
                scores.append(s)
                labels += [-1 if v is None else int(v) for v in cols["label"]]
        if not labels:
            raise InputError(f"{cfg.input}: the dataset holds no items to score")
        summary: dict[str, Any] = {"items": len(labels), "reference": cfg.reference, "k": cfg.k}
        summary |= {"reference_items": len(ref_ids), "model": getattr(embed, "uri", "pixels")}
        metrics = _metrics(cfg, np.concatenate(scores), np.asarray(labels), out)
        (out / "metrics.json").write_text(json.dumps({**summary, **metrics, "config": asdict(cfg)}))
    logged = _log(cfg, metrics) if cfg.log else ""
    return {**summary, **metrics, "output": cfg.output, "run_id": logged}


def _metrics(cfg: Config, scores: np.ndarray, labels: np.ndarray, out: Path) -> dict[str, Any]:
    """Detection metrics on the labelled items, and the histogram, when normal is known."""
    if cfg.normal_labels is None or (labels < 0).all():
        return {}
    known = labels >= 0
    anomalous = ~np.isin(labels[known], cfg.normal_labels)
    score_histogram(scores, labels, cfg.normal_labels, out / "score_histogram.png")
    return detection_metrics(scores[known], anomalous)


def _log(cfg: Config, metrics: dict[str, Any]) -> str:
    logger = RunLogger(cfg.tracking_uri, cfg.experiment)
    run_id = logger.start(f"anomaly-{Path(cfg.output).name}", asdict(cfg), {"job": "anomaly"})
    logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=0)
    logger.log_artifacts(cfg.output)
    logger.end()
    return run_id


def summarize(s: dict[str, Any]) -> str:
    """Short terminal summary."""
    lines = [f"scored {s['items']} items against {s['reference_items']} normal ones, k={s['k']}"]
    if "auroc" in s:
        lines.append(
            f"AUROC {s['auroc']:.3f}  AP {s['ap']:.3f}  FPR@95%TPR {s['fpr_at_95_tpr']:.3f}  "
            f"({s['anomalies']} anomalies, {s['normal']} normal)"
        )
    lines.append(f"wrote {s['output']}" + (f"  (MLflow run {s['run_id']})" if s["run_id"] else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek anomaly") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
