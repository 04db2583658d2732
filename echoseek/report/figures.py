"""The report's five figures, drawn with matplotlib (Agg) into PNG files.

Text falls back glyph by glyph from DejaVu Sans to a CJK font (Noto Sans CJK, installed by
``make fonts``), so Japanese titles and label names render instead of empty boxes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CJK_FAMILIES = ("Noto Sans CJK JP", "Noto Sans JP", "IPAGothic", "IPAexGothic")
POSITIVE, NEGATIVE = "#2ca02c", "#d62728"


def cjk_families() -> list[str]:
    """The CJK font families matplotlib can find on this machine, in preference order."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    if not any(f.name in CJK_FAMILIES for f in manager.ttflist):
        # fonts installed after matplotlib cached its font list: add them from fontconfig's
        for path in font_manager.findSystemFonts():
            if any(tag in Path(path).name for tag in ("CJK", "ipag", "ipaexg")):
                manager.addfont(path)
    known = {f.name for f in manager.ttflist}
    return [name for name in CJK_FAMILIES if name in known]


@contextlib.contextmanager
def pyplot() -> Iterator[Any]:
    """``matplotlib.pyplot`` on the Agg backend with the CJK fallback fonts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.family": ["DejaVu Sans", *cjk_families()]}):
        yield plt


def training_curve(history: Mapping[str, Sequence[tuple[int, float]]], path: Path) -> Path:
    """Training loss by epoch, with the held-out val mAP on a second axis when logged;
    a figure saying so when the model has no training history."""
    with pyplot() as plt:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        loss = history.get("loss", [])
        if not loss:
            ax.text(
                0.5,
                0.5,
                "no training history in MLflow\n(raw pixels or untracked model)",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_axis_off()
        else:
            from matplotlib.ticker import MaxNLocator

            lines = ax.plot(*zip(*loss, strict=True), marker="o", color="C0", label="training loss")
            ax.set(xlabel="epoch", ylabel="training loss")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            val = history.get("val_map", [])
            if val:
                twin = ax.twinx()
                lines += twin.plot(*zip(*val, strict=True), marker="s", color="C1", label="val mAP")
                twin.set_ylabel("held-out val mAP")
            ax.legend(handles=lines, fontsize=8, loc="best")
            ax.grid(True, alpha=0.3)
        return _save(fig, path, plt)


def label_distribution(counts: Mapping[str, int], names: Mapping[str, str], path: Path) -> Path:
    """Items per label, each bar annotated with its count."""
    with pyplot() as plt:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        keys = sorted(counts, key=lambda k: (len(k), k))
        bars = ax.bar([names.get(k, k) for k in keys], [counts[k] for k in keys], color="C0")
        ax.bar_label(bars)
        ax.set(xlabel="label", ylabel="items", title="label distribution")
        return _save(fig, path, plt)


def positive_ratio(relevant_ranked: np.ndarray, base_rate: float, path: Path) -> Path:
    """The share of positives in the top K for every K, against the base rate."""
    ks = np.arange(1, relevant_ranked.size + 1)
    with pyplot() as plt:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(ks, np.cumsum(relevant_ranked) / ks, color="C0", label="positives in top K")
        ax.axhline(base_rate, color="gray", ls="--", label=f"base rate {base_rate:.2f}")
        ax.set(xscale="log", xlabel="K", ylabel="positive ratio", ylim=(0, 1.05))
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        return _save(fig, path, plt)


def similarity_curve(scores_ranked: np.ndarray, relevant_ranked: np.ndarray, path: Path) -> Path:
    """Score against rank, positives and negatives in their own colours."""
    ranks = np.arange(1, scores_ranked.size + 1)
    with pyplot() as plt:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(ranks, scores_ranked, color="lightgray", lw=1)
        for mask, colour, name in (
            (relevant_ranked, POSITIVE, "positive"),
            (~relevant_ranked, NEGATIVE, "negative"),
        ):
            ax.scatter(ranks[mask], scores_ranked[mask], s=8, color=colour, label=name)
        ax.set(xlabel="rank", ylabel="cosine score", title="score by rank")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        return _save(fig, path, plt)


def score_histogram(
    scores: np.ndarray, labels: np.ndarray, normal: Sequence[int], path: Path
) -> Path:
    """Anomaly scores by class (label -1: unlabelled), normal classes solid, others hatched."""
    with pyplot() as plt:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        bins = np.histogram_bin_edges(scores, bins=40)
        for label in np.unique(labels):
            kind = "normal" if label in normal else "unlabelled" if label < 0 else "anomaly"
            ax.hist(
                scores[labels == label],
                bins=bins,
                alpha=0.55,
                hatch=None if kind == "normal" else "//",
                label=f"label {label} ({kind}, {int((labels == label).sum())})",
            )
        ax.set_xlabel("kNN score (mean cosine distance)")
        ax.set_ylabel("items")
        ax.legend(fontsize=8)
        return _save(fig, path, plt)


def topk_grid(
    query: np.ndarray, hits: Sequence[Mapping[str, Any]], images: Sequence[np.ndarray], path: Path
) -> Path:
    """The query beside its top-K thumbnails; each hit framed green (positive) or red."""
    cols = min(5, max(len(hits), 1))
    rows = 1 + -(-len(hits) // cols)
    with pyplot() as plt:
        fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.3 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.set_axis_off()
        _show(axes[0, 0], query, "query", "black")
        for i, (hit, image) in enumerate(zip(hits, images, strict=True)):
            colour = POSITIVE if hit["positive"] else NEGATIVE
            title = f"#{hit['rank']} {hit['score']:.3f}\n{hit['label_name']}"
            title += f" (frame {hit['frame_index']})"
            _show(axes[1 + i // cols, i % cols], image, title, colour)
        return _save(fig, path, plt)


def _show(ax: Any, image: np.ndarray, title: str, colour: str) -> None:
    ax.set_axis_on()
    ax.imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
    ax.set_title(title, fontsize=8, color=colour)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path
