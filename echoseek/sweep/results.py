"""What a sweep leaves behind: one row per trial, the best trial's config, figures.

``results.parquet``: trial id, status (``finished``, ``stopped`` by the scheduler, ``failed``),
error, seconds, epochs run, the best and last value of the metric, the per-epoch history of
the metric and of RankMe, and one ``param.<field>`` column per searched field. The metric is
the trials' held-out validation metric: it chose the best trial, so it is a selection score,
not a test score.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echoseek.sweep.space import decode


def trial_row(result: Any, metric: str, mode: str, epochs: int) -> dict[str, Any]:
    """One Tune ``Result`` as a row (see the module docstring)."""
    history = result.metrics_dataframe
    values = _column(history, metric)
    finite = [v for v in values if math.isfinite(v)]
    best = (max(finite) if mode == "max" else min(finite)) if finite else math.nan
    last = result.metrics or {}
    done = int(last.get("training_iteration", len(values)))
    status = "failed" if result.error else ("finished" if done >= epochs else "stopped")
    return {
        "trial_id": Path(result.path).name,  # the trial's dir is named by its id
        "status": status,
        "error": _error_line(result.error),
        "seconds": float(last.get("time_total_s", math.nan)),
        "epochs": done,
        "best": best,
        "last": values[-1] if values else math.nan,
        "history": values,
        "rankme": _column(history, "rankme"),
        "params": dict(result.config.get("params", {})),
    }


def _column(frame: Any, name: str) -> list[float]:
    if frame is None or name not in getattr(frame, "columns", ()):
        return []
    return [float(v) for v in frame[name].tolist()]


def _error_line(error: BaseException | None) -> str:
    if error is None:
        return ""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def ranked(rows: Sequence[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Rows best first (failed and metric-less trials last)."""
    sign = -1.0 if mode == "max" else 1.0
    return sorted(rows, key=lambda r: (not math.isfinite(r["best"]), sign * _or(r["best"], 0.0)))


def _or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def best_finished(rows: Sequence[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    """The best trial that ran all its epochs (it exported a model), or None."""
    done = [r for r in ranked(rows, mode) if r["status"] == "finished" and math.isfinite(r["best"])]
    return done[0] if done else None


def write_table(
    rows: Sequence[dict[str, Any]], keys: Sequence[str], path: Path, extra: Sequence[str] = ()
) -> None:
    """``results.parquet`` at ``path`` (the sweep publishes its output dir as a whole);
    ``extra``: more per-row values, one column each."""
    columns: dict[str, list[Any]] = {
        name: [r[name] for r in rows]
        for name in ("trial_id", "status", "error", "seconds", "epochs", "best", "last")
    }
    columns["history"] = [r["history"] for r in rows]
    columns["rankme"] = [r["rankme"] for r in rows]
    for name in extra:
        columns[name] = [r[name] for r in rows]
    for key in keys:
        columns[f"param.{key}"] = [text(r["params"].get(key)) for r in rows]
    pq.write_table(pa.table(columns), path)


def text(value: Any) -> str:
    """A parameter value as text (one column type whatever the values: 0.1, 'cosine', inf, a
    list of one value per field of a comma key)."""
    value = decode(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation of paired finite values (NaN with fewer than 3 pairs or
    a constant side)."""
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return math.nan
    a, b = zip(*pairs, strict=True)
    return float(spearmanr(a, b).statistic)


def rankme_verdict(rho: float, pairs: int) -> str:
    """Whether RankMe tracked the held-out metric over a sweep's trials, in words: Spearman's
    rho >= 0.5 "tracks", <= -0.5 "runs against", else "does not track"; fewer than 4 trials
    with both values, or a constant side, cannot tell."""
    if pairs < 4:
        return f"too few trials ({pairs}) to tell"
    if not math.isfinite(rho):
        return "cannot tell (RankMe or the metric is constant)"
    if rho >= 0.5:
        return "tracks"
    return "runs against" if rho <= -0.5 else "does not track"


def rankme_pairs(rows: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """(final RankMe, best metric) of every trial that reported both."""
    pairs = [(r["rankme"][-1], r["best"]) for r in rows if r["rankme"] and math.isfinite(r["best"])]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def figures(
    rows: Sequence[dict[str, Any]], keys: Sequence[str], metric: str, out: Path
) -> list[Path]:
    """The metric against each swept field, a heatmap of the first two fields, the trial
    curves (dashed: stopped early) and RankMe against the metric; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    scored = [r for r in rows if math.isfinite(r["best"])]
    for key in keys:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        labels = [text(r["params"].get(key)) for r in scored]
        order = sorted(set(labels), key=_sort_key)
        ax.scatter([order.index(x) for x in labels], [r["best"] for r in scored])
        ax.set_xticks(range(len(order)), [_short(x) for x in order], rotation=30, ha="right")
        ax.set(xlabel=key, ylabel=f"held-out {metric}")
        written.append(_save(fig, out / f"{_file_part(key)}.png", plt))
    if len(keys) >= 2:
        written.append(_heatmap(scored, keys[0], keys[1], metric, out / "heatmap.png", plt))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in rows:
        style = "--" if r["status"] == "stopped" else "-"
        ax.plot(range(1, len(r["history"]) + 1), r["history"], style, marker="o", ms=3)
    ax.set(xlabel="epoch", ylabel=f"held-out {metric}", title="trials (dashed: stopped early)")
    written.append(_save(fig, out / "trial_curves.png", plt))
    ranks, values = rankme_pairs(rows)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(ranks, values)
    ax.set(xlabel="RankMe (last epoch)", ylabel=f"held-out {metric}")
    ax.set_title(f"Spearman rho = {spearman(ranks, values):.2f} over {len(ranks)} trials")
    written.append(_save(fig, out / "rankme_vs_metric.png", plt))
    return written


def _heatmap(
    rows: Sequence[dict[str, Any]], x: str, y: str, metric: str, path: Path, plt: Any
) -> Path:
    """Mean metric per (x, y) cell; empty cells blank."""
    xs = sorted({text(r["params"].get(x)) for r in rows}, key=_sort_key)
    ys = sorted({text(r["params"].get(y)) for r in rows}, key=_sort_key)
    grid = np.full((len(ys), len(xs)), np.nan)
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            cell = [
                r["best"]
                for r in rows
                if text(r["params"].get(x)) == xv and text(r["params"].get(y)) == yv
            ]
            if cell:
                grid[j, i] = float(np.mean(cell))
    fig, ax = plt.subplots(figsize=(5, 4))
    with warnings.catch_warnings():  # a one-row or one-column grid is still a heatmap
        warnings.simplefilter("ignore", UserWarning)
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(xs)), [_short(x) for x in xs], rotation=30, ha="right")
    ax.set_yticks(range(len(ys)), [_short(y) for y in ys])
    ax.set(xlabel=x, ylabel=y)
    fig.colorbar(image, ax=ax, label=f"held-out {metric}")
    return _save(fig, path, plt)


def _short(text: str, width: int = 20) -> str:
    """A tick label of at most ``width`` characters (a path keeps its end)."""
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _sort_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _file_part(key: str) -> str:
    return "metric_vs_" + "".join(c if c.isalnum() else "_" for c in key)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def params_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The searched fields, in the order the rows first name them."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r["params"]))
    return list(keys)
