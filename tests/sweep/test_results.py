"""Sweep results: ranking, the best finished trial, Spearman's rho, the table and figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from echoseek.sweep import results


def row(trial: str, status: str, history: list[float], **params: Any) -> dict[str, Any]:
    finite = [v for v in history if math.isfinite(v)]
    return {
        "trial_id": trial,
        "status": status,
        "error": "boom" if status == "failed" else "",
        "seconds": 1.0,
        "epochs": len(history),
        "best": max(finite) if finite else math.nan,
        "last": history[-1] if history else math.nan,
        "history": history,
        "rankme": [float(len(trial))] * len(history),
        "params": params,
    }


ROWS = [
    row("a", "finished", [0.2, 0.4], lr=0.1, d="cosine"),
    row("bb", "stopped", [0.9], lr=0.2, d="cosine"),
    row("ccc", "failed", [], lr=0.3, d="sqeuclidean"),
    row("dddd", "finished", [0.5, 0.6], lr=0.4, d="sqeuclidean"),
]


def test_ranking_puts_failed_trials_last_and_the_best_must_have_finished() -> None:
    assert [r["trial_id"] for r in results.ranked(ROWS, "max")] == ["bb", "dddd", "a", "ccc"]
    assert [r["trial_id"] for r in results.ranked(ROWS, "min")] == ["a", "dddd", "bb", "ccc"]
    best = results.best_finished(ROWS, "max")
    assert best is not None and best["trial_id"] == "dddd"  # bb was stopped: it has no model
    assert results.best_finished(ROWS[1:3], "max") is None


@pytest.mark.parametrize("n", [3, 5, 12])
def test_spearman_matches_the_rank_formula(n: int) -> None:
    rng = np.random.default_rng(n)
    xs, ys = rng.permutation(n).astype(float), rng.permutation(n).astype(float)
    d = xs - ys  # no ties: rho = 1 - 6 sum(d^2) / (n (n^2 - 1))
    expected = 1 - 6 * float((d**2).sum()) / (n * (n * n - 1))
    assert results.spearman(list(xs), list(ys)) == pytest.approx(expected)
    assert math.isnan(results.spearman([1.0, 2.0], [3.0, 4.0]))
    assert math.isnan(results.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_table_and_figures(tmp_path: Path) -> None:
    keys = results.params_of(ROWS)
    assert keys == ["lr", "d"]
    results.write_table(ROWS, keys, tmp_path / "results.parquet")
    table = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert [r["param.d"] for r in table] == ["cosine", "cosine", "sqeuclidean", "sqeuclidean"]
    assert table[0]["history"] == [0.2, 0.4] and table[2]["error"] == "boom"
    files = results.figures(ROWS, keys, "val_map", tmp_path)
    names = {f.name for f in files}
    assert names == {
        "metric_vs_lr.png",
        "metric_vs_d.png",
        "heatmap.png",
        "trial_curves.png",
        "rankme_vs_metric.png",
    }
    assert all(f.stat().st_size > 1000 for f in files)


@pytest.mark.parametrize(
    ("rho", "pairs", "verdict"),
    [
        (0.8, 6, "tracks"),
        (0.5, 4, "tracks"),
        (0.1, 6, "does not track"),
        (-0.49, 6, "does not track"),
        (-0.9, 6, "runs against"),
        (0.9, 3, "too few trials (3) to tell"),
        (math.nan, 8, "cannot tell (RankMe or the metric is constant)"),
    ],
)
def test_rankme_verdict_reads_rho_in_words(rho: float, pairs: int, verdict: str) -> None:
    assert results.rankme_verdict(rho, pairs) == verdict


def test_top_table_shows_drawn_values_not_their_encoding() -> None:
    from echoseek.sweep.progress import top_table
    from echoseek.sweep.space import encode

    rows = [
        row("aa", "finished", [0.5, 0.7], d=encode(["soart3_gamma", {"p": 2}])),
        row("bb", "stopped", [0.4], d=encode(["cosine", {}])),
    ]
    lines = top_table(rows, "val_map", ["d"]).splitlines()
    assert lines[0].split() == ["trial", "status", "val_map", "d"]
    assert lines[1].split(maxsplit=3) == ["aa", "finished", "0.7000", '["soart3_gamma", {"p": 2}]']
    assert lines[2].split(maxsplit=3) == ["bb", "stopped", "0.4000", '["cosine", {}]']
