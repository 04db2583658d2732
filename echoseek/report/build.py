"""Write the team's report set for one query against a labelled corpus into a directory.

Files: ``metrics.json``, ``topk_result.md``, ``analytics_summary.json``, the five figures
(:mod:`echoseek.report.figures`) and ``report.md`` / ``report.html`` putting them together with
the training run's config. Every number is measured on the corpus given, with the query image
given; when that corpus is the one the model trained on, the report says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.data.dataset import decode_png, iter_batches
from echoseek.errors import InputError
from echoseek.report import figures
from echoseek.report.analytics import positives_within, rank, topk_rows
from echoseek.report.document import Block, cell, markdown, standalone_html
from echoseek.report.provenance import ModelRun

ITEM_COLUMNS = ["id", "label", "source", "frame_index"]
FIGURES = {
    "training_loss_curve.png": "Training loss and held-out val mAP by epoch (MLflow history)",
    "label_distribution.png": "Items per label in the corpus",
    "topk_positive_ratio.png": "Share of positives in the top K against the base rate",
    "topk_similarity_curve.png": "Cosine score by rank (green: positive, red: negative)",
    "topk_grid.png": "The query beside its top-K (green frame: positive, red: negative)",
}


@dataclass
class Evidence:
    """What a report is made of: the evaluation, the corpus rows, the query and the run."""

    evaluation: dict[str, Any]  # echoseek evaluate's document
    items: Mapping[str, Sequence[Any]]  # columns id, label, source, frame_index (corpus order)
    vectors: np.ndarray  # (N, D) L2-normalised, corpus order
    query_vector: np.ndarray  # (D,)
    query_image: np.ndarray
    thumbnails: Sequence[bytes]  # PNG of every top-K hit, in rank order (read by the caller)
    run: ModelRun


def ranking(ev: Evidence, positive_label: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, scores, relevant-in-rank-order) of the query against the corpus."""
    order, scores = rank(ev.query_vector, ev.vectors)
    relevant = np.array([v == positive_label for v in ev.items["label"]])[order]
    return order, scores, relevant


def write_report(
    out: Path,
    ev: Evidence,
    *,
    title: str,
    query_name: str,
    positive_label: int,
    k: int,
    ks: Sequence[int],
    label_names: Mapping[str, str],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Write every file of the report set except the PDF into ``out``; returns metrics.json."""
    order, scores, relevant = ranking(ev, positive_label)
    e = ev.evaluation
    base = e["positive_ratio"]
    hits = topk_rows(order, scores, ev.items, k, label_names)
    for hit, rel in zip(hits, relevant, strict=False):
        hit["positive"] = bool(rel)
    seconds = e["latency"]["median_ms"] / 1e3
    trained_on_it = bool(ev.run.dataset_sha256) and ev.run.dataset_sha256 == e["dataset"]["sha256"]
    metrics = {
        "map": e["leave_one_out"]["map"],
        "query_ap": e["query"]["ap"],
        "frames": e["items"],
        "positives": e["positives"],
        "positive_ratio": base,
        "seconds_per_query": seconds,
        "model": e["model"],
        "mlflow_run_id": ev.run.run_id,
        "dataset_sha256": e["dataset"]["sha256"],
        "trained_on_this_dataset": trained_on_it,
        "evaluation": e,
    }
    analytics = {
        "query": query_name,
        "base_rate": base,
        "top_k": positives_within(relevant, ks, base),
    }
    _json(out / "metrics.json", metrics)
    _json(out / "analytics_summary.json", analytics)
    (out / "topk_result.md").write_text(topk_markdown(query_name, seconds, hits), encoding="utf-8")
    counts = _label_counts(ev.items["label"])
    figures.training_curve(ev.run.history, out / "training_loss_curve.png")
    figures.label_distribution(counts, label_names, out / "label_distribution.png")
    figures.positive_ratio(relevant, base, out / "topk_positive_ratio.png")
    figures.similarity_curve(scores[order], relevant, out / "topk_similarity_curve.png")
    images = [decode_png(t) for t in ev.thumbnails]
    figures.topk_grid(ev.query_image, hits, images, out / "topk_grid.png")
    blocks = report_blocks(title, query_name, metrics, analytics, hits, ev.run, settings)
    (out / "report.md").write_text(markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(standalone_html(title, blocks), encoding="utf-8")
    return metrics


def read_items(dataset: str, ids: Sequence[str]) -> dict[str, list[Any]]:
    """The corpus rows' id, label, source and frame index, in the order ``ids`` were embedded."""
    cols: dict[str, list[Any]] = {c: [] for c in ITEM_COLUMNS}
    for batch in iter_batches(dataset, 4096, columns=ITEM_COLUMNS):
        for name, values in batch.to_pydict().items():
            cols[name] += values
    if cols["id"] != list(ids):
        raise InputError(f"{dataset}: the dataset changed while the report was being made")
    return cols


def topk_markdown(query: str, seconds: float, hits: Sequence[Mapping[str, Any]]) -> str:
    """``topk_result.md``: the query, its time and the top-K table."""
    header = "| rank | frame | score | label | positive | id |\n|---|---|---|---|---|---|\n"
    rows = "".join(
        f"| {h['rank']} | {h['frame_index']} | {h['score']:.4f} | {h['label_name']} | "
        f"{'yes' if h['positive'] else 'no'} | {h['id']} |\n"
        for h in hits
    )
    return f"# Top-{len(hits)} for {query}\n\ntime per query: {seconds:.4f} s\n\n{header}{rows}"


def report_blocks(
    title: str,
    query: str,
    metrics: Mapping[str, Any],
    analytics: Mapping[str, Any],
    hits: Sequence[Mapping[str, Any]],
    run: ModelRun,
    settings: Mapping[str, Any],
) -> list[Block]:
    """The report's content, in reading order."""
    e = metrics["evaluation"]
    loo, q = e["leave_one_out"], e["query"]
    where = (
        "This corpus is the one the model trained on: these scores are NOT held-out."
        if metrics["trained_on_this_dataset"]
        else "Measured on the corpus and query below; the model's training run did not "
        "record this corpus (sha256) as its training data."
    )
    blocks: list[Block] = [
        ("h1", title),
        (
            "p",
            f"Model: {metrics['model']}"
            + (f" (MLflow run {run.name or '?'} {run.run_id})" if run.run_id else ""),
        ),
        (
            "p",
            f"Corpus: {e['dataset']['path']} (sha256 {metrics['dataset_sha256'][:16]}), "
            f"{metrics['frames']} frames, {metrics['positives']} positives "
            f"(base rate {metrics['positive_ratio']:.3f}). Query: {query}.",
        ),
        ("p", where),
        ("h2", "Retrieval"),
        (
            "table",
            ["metric", "value"],
            [
                ["query AP", q["ap"]],
                [f"mAP (leave-one-out, {int(loo['num_queries'])} positive queries)", loo["map"]],
                *[[f"query {name}", value] for name, value in q.items() if name != "ap"],
                ["seconds per query (median, embed + rank)", metrics["seconds_per_query"]],
            ],
        ),
        ("h2", "Positives in the top K"),
        (
            "table",
            ["K", "positives", "ratio", "lift over base rate"],
            [[kk, v["positives"], v["ratio"], v["lift"]] for kk, v in analytics["top_k"].items()],
        ),
        ("h2", f"Top-{len(hits)}"),
        (
            "table",
            ["rank", "frame", "score", "label", "positive", "id"],
            [
                [
                    h["rank"],
                    h["frame_index"],
                    h["score"],
                    h["label_name"],
                    "yes" if h["positive"] else "no",
                    h["id"],
                ]
                for h in hits
            ],
        ),
        ("h2", "Figures"),
        *[("figure", name, caption) for name, caption in FIGURES.items()],
        ("h2", "Training run config"),
    ]
    if run.params:
        blocks.append(("table", ["param", "value"], sorted(run.params.items())))
    else:
        blocks.append(("p", "No MLflow training run is known for this model."))
    blocks.append(("h2", "Report settings"))
    blocks.append(("table", ["setting", "value"], [[k, cell(v)] for k, v in settings.items()]))
    return blocks


def _label_counts(labels: Sequence[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in labels:
        key = "unlabelled" if v is None else str(v)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
