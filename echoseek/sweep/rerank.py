"""Re-ranking sweep: the exact re-rank distance and depth of an index version, scored on
held-out labelled queries, with no training.

    echoseek tune tune/rerank.yaml index=work/demo/index input=work/demo/val_vectors

The queries are a vectors artifact embedded from a labelled dataset the model did not train
on (``echoseek embed`` of the held-out split). Every setting of the space, as a grid, runs
each query alone, timed:

1. the index's own search with re-rank off, keeping ``rerank_depth`` candidates;
2. an exact re-score of the candidates with ``rerank`` (any :mod:`echoseek.distances` name,
   with its ``rerank_params``), keeping ``k``. ``rerank: "false"`` keeps the ANN order.

The hits' labels come from the index's metadata. A hit is relevant when its label is the
query's. Scores per query (AP@k: :func:`~echoseek.evaluation.ranking.ap_at_k`), averaged over
the queries:

    AP@k = (1 / min(k, R)) · Σ_{i ≤ k} P@i · rel_i     (R: relevant items in the index)
    P@k  = (1 / k) · Σ_{i ≤ k} rel_i

Per setting the sweep reports ``val_map`` (mean AP@k), ``val_p@10`` and the per-query latency
(p50 and p95, in ms). The output is the same as a training sweep's: one MLflow parent run with
a child run per setting, ``results.parquet``, ``best.yaml`` (the best setting's search
options) and figures.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from echoseek.config import flatten, plain, read_yaml, to_dict, with_values
from echoseek.data.vectors import iter_vector_batches
from echoseek.distances import resolve_params
from echoseek.errors import ConfigError, InputError
from echoseek.evaluation.ranking import ap_at_k
from echoseek.index import open_index
from echoseek.index.rerank import rerank_candidates
from echoseek.storage import absolute, staged_dir
from echoseek.sweep import results
from echoseek.sweep.config import SweepConfig
from echoseek.sweep.progress import top_table
from echoseek.sweep.space import Param, check_space, parse_space
from echoseek.sweep.trial import expand
from echoseek.sweep.tuner import SWEEP_FILE, check_output
from echoseek.tracking import RunLogger

OFF = "false"  # rerank value: keep the ANN order


@dataclass
class RerankSetting:
    """One setting of a re-ranking sweep (the fields its ``space`` and ``fixed`` may name)."""

    rerank: str = "cosine"  # a distance name of echoseek.distances, or "false" (ANN order)
    rerank_params: dict[str, float] = field(default_factory=dict)  # e.g. {p: 4}
    rerank_depth: int = 100  # ANN candidates re-scored per query
    nprobe: int = 0  # 0: the index version's default
    k: int = 10  # hits scored per query

    def __post_init__(self) -> None:
        if self.rerank != OFF:
            resolve_params(self.rerank, **self.rerank_params)
        elif self.rerank_params:
            raise ConfigError("rerank_params: given, but rerank is false")
        if self.k < 1 or self.rerank_depth < self.k or self.nprobe < 0:
            raise ConfigError(
                f"k >= 1, rerank_depth >= k and nprobe >= 0 are required "
                f"(k={self.k}, rerank_depth={self.rerank_depth}, nprobe={self.nprobe})"
            )


def settings(cfg: SweepConfig) -> tuple[dict[str, Param], list[dict[str, Any]], dict[str, Any]]:
    """The checked space, every draw of its grid (the product of the fields' lists, each
    once) and the common setting (``base`` YAML with ``fixed``) as plain data."""
    if not isinstance(cfg.base, str):
        raise ConfigError(f"base: expected a YAML file of rerank settings, got {cfg.base!r}")
    base = read_yaml(cfg.base) if cfg.base else {}
    common = to_dict(with_values(RerankSetting, base, flatten(cfg.fixed)))
    space = parse_space(cfg.space)
    for key, p in space.items():
        if p.kind not in ("choice", "grid"):
            raise ConfigError(f"space.{key}: a re-ranking sweep tries every value: give a list")
    check_space(space, lambda draw: with_values(RerankSetting, common, expand(draw)))
    draws = [
        dict(zip(space, values, strict=True))
        for values in itertools.product(*(p.args for p in space.values()))
    ]
    return space, draws, common  # deterministic: each setting once (num_samples is ignored)


@dataclass
class Queries:
    """Held-out query vectors and their labels."""

    vectors: np.ndarray
    labels: np.ndarray


def load_queries(path: str) -> Queries:
    """The labelled rows of a vectors artifact (unlabelled rows cannot be scored)."""
    vectors, labels = [], []
    for batch in iter_vector_batches(path):
        keep = [i for i, label in enumerate(batch.metadata.get("label", [])) if label is not None]
        vectors.append(batch.vectors[keep])
        labels += [int(batch.metadata["label"][i]) for i in keep]
    if not labels:
        raise InputError(f"input: {path} has no labelled rows to score re-ranking with")
    return Queries(np.concatenate(vectors), np.asarray(labels, dtype=np.int64))


def index_labels(reader: Any) -> dict[int, int]:
    """Internal id -> label of every live, labelled item of the index version."""
    ids = np.concatenate(
        [np.arange(s["id_start"], s["id_start"] + s["count"]) for s in reader.manifest["shards"]]
    )
    ids = ids[~np.isin(ids, reader.tombstones)]
    out: dict[int, int] = {}
    for start in range(0, len(ids), 65_536):
        for rec in reader.lookup(ids[start : start + 65_536]):
            if rec.get("label") is not None:
                out[int(rec["internal_id"])] = int(rec["label"])
    return out


def score_setting(
    reader: Any, queries: Queries, labels: dict[int, int], totals: dict[int, int],
    s: RerankSetting,
) -> dict[str, float]:  # fmt: skip
    """``val_map``, ``val_p@10``, latency p50/p95 (ms) of one setting (module docstring);
    ``labels``: the index's id -> label, ``totals``: label -> items in the index."""
    aps, p10s, seconds = [], [], []
    for q, label in zip(queries.vectors, queries.labels, strict=True):
        start = time.perf_counter()
        _, ids = reader.search(q[None, :], s.rerank_depth, s.nprobe or None, rerank=False)
        if s.rerank != OFF:
            prepared = reader.prepare_queries(q[None, :])
            _, ids = rerank_candidates(
                prepared, ids, reader.fetch_vectors, s.rerank, s.k, **s.rerank_params
            )
        seconds.append(time.perf_counter() - start)
        rel = np.array([labels.get(int(i)) == label for i in ids[0, : s.k]], dtype=np.float64)
        aps.append(ap_at_k(rel, totals.get(int(label), 0), s.k))
        p10s.append(float(rel[:10].sum() / 10))
    ms = np.asarray(seconds) * 1000
    return {
        "val_map": float(np.mean(aps)),
        "val_p@10": float(np.mean(p10s)),
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p95": float(np.percentile(ms, 95)),
    }


def run_rerank_sweep(cfg: SweepConfig) -> dict[str, Any]:
    """Score every setting, log each as a child run, publish the output; a summary."""
    if not cfg.index or not cfg.input:
        raise ConfigError("index and input are required: an index version and held-out vectors")
    cfg = dataclasses.replace(
        cfg,
        output=absolute(cfg.output),
        name=cfg.name or f"sweep-rerank-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    space, draws, common = settings(cfg)
    check_output(cfg)
    queries = load_queries(cfg.input)
    started = time.perf_counter()
    logger = RunLogger(cfg.tracking_uri, cfg.experiment)
    with open_index(cfg.index) as reader:
        if queries.vectors.shape[1] != reader.dim:
            raise InputError(
                f"input: vectors of dim {queries.vectors.shape[1]}, index version "
                f"{reader.version} has dim {reader.dim}"
            )
        labels = index_labels(reader)
        kinds, counts = np.unique(list(labels.values()), return_counts=True)
        totals = {int(k): int(n) for k, n in zip(kinds, counts, strict=True)}
        parent = logger.start(cfg.name, plain(cfg), {"job": "tune", "sweep_job": "rerank"})
        rows = []
        for n, draw in enumerate(draws):
            setting = with_values(RerankSetting, common, expand(draw))
            t0 = time.perf_counter()
            scores = score_setting(reader, queries, labels, totals, setting)
            row = setting_row(f"s{n:03d}", draw, scores, time.perf_counter() - t0, cfg.metric)
            row["run_id"] = log_child(logger, cfg, parent, row, reader.version)
            rows.append(row)
            p50 = scores["latency_ms_p50"]
            print(f"setting {n + 1}/{len(draws)}  {describe(draw)}  {cfg.metric} "
                  f"{row['best']:.4f}  p50 {p50:.2f} ms", flush=True)  # fmt: skip
        version = reader.version
    rows = results.ranked(rows, cfg.mode)
    best = rows[0]
    keys = list(space)
    with staged_dir(cfg.output, overwrite=True) as out:
        results.write_table(rows, keys, out / "results.parquet", extra=METRICS)
        best_setting = with_values(RerankSetting, common, expand(best["params"]))
        best_yaml = {"index": str(cfg.index), "index_version": version, **plain(best_setting)}
        (out / "best.yaml").write_text(yaml.safe_dump(best_yaml, sort_keys=False))
        figure(rows, cfg.metric, out / "metric_vs_latency.png")
        (out / SWEEP_FILE).write_text(json.dumps({"name": cfg.name, "job": cfg.job}))
    logger.log_artifacts(cfg.output, "sweep")
    logger.set_tags({"best_trial": best["trial_id"], "best_run_id": best["run_id"]})
    logger.log_metrics({f"best_{cfg.metric}": best["best"]}, 0)
    logger.end()
    print(top_table(rows, cfg.metric, keys), flush=True)
    return {
        "output": cfg.output,
        "run_id": parent,
        "settings": len(rows),
        "metric": cfg.metric,
        "index_version": version,
        "best_trial": best["trial_id"],
        f"best_{cfg.metric}": best["best"],
        "best_params": best["params"],
        "best_latency_ms_p50": best["latency_ms_p50"],
        "seconds": time.perf_counter() - started,
    }


METRICS = ("val_map", "val_p@10", "latency_ms_p50", "latency_ms_p95")


def setting_row(
    trial_id: str, draw: dict[str, Any], scores: dict[str, float], seconds: float, metric: str
) -> dict[str, Any]:
    """A scored setting as a row of ``results.parquet`` (the training sweep's columns)."""
    if metric not in scores:
        raise ConfigError(f"metric: a re-ranking sweep reports {', '.join(METRICS)}")
    value = scores[metric]
    return {
        "trial_id": trial_id,
        "status": "finished",
        "error": "",
        "seconds": seconds,
        "epochs": 0,
        "best": value,
        "last": value,
        "history": [value],
        "rankme": [],
        "params": draw,
        **scores,
    }


def log_child(logger: Any, cfg: SweepConfig, parent: str, row: dict[str, Any], version: str) -> str:
    """One MLflow child run per setting: its values as params, its scores as metrics."""
    child = type(logger)(logger.uri, logger.experiment)
    params = {**{f"override.{k}": v for k, v in expand(row["params"]).items()},
              "index_version": version}  # fmt: skip
    run_id = child.start(f"{cfg.name}-{row['trial_id']}", params,
                         {"mlflow.parentRunId": parent, "job": "trial"})  # fmt: skip
    child.log_metrics({k: row[k] for k in METRICS}, 0)
    child.end()
    return run_id


def describe(draw: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in draw.items())


def figure(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    """The held-out metric against the p50 latency, one labelled point per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r["latency_ms_p50"], r["best"])
        ax.annotate(r["trial_id"], (r["latency_ms_p50"], r["best"]), fontsize=7)
    ax.set(xlabel="latency per query, p50 (ms)", ylabel=f"held-out {metric}")
    ax.set_title(f"{len(rows)} re-rank settings")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
