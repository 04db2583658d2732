"""Benchmark echoseek.evaluation.ranking and the m-per-class sampler against their usual peers.

    .venv/bin/python bench/bench_metrics.py

Peers, measured in the same run on the same data (best of 3, one BLAS/torch thread):
- mAP: a Python loop of ``sklearn.metrics.average_precision_score`` over queries;
- MAP@R, R-precision, P@1 (leave-one-out): pytorch-metric-learning's ``AccuracyCalculator``
  (faiss kNN to depth max class size); echoseek's time includes the similarity matrix and a
  full sort of every row (``ranking_metrics``, which also yields AP);
- weighted kNN accuracy: ``sklearn.neighbors.KNeighborsClassifier`` (brute force, cosine,
  weights exp(s/τ));
- sampler: pytorch-metric-learning's ``MPerClassSampler`` for one epoch of indices.
Prints a markdown table; ``max |diff|`` compares the values both sides computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from echoseek.data.samplers import MPerClassBatchSampler
from echoseek.evaluation import ranking


def best_of(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Fastest wall time of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def clustered(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters on the unit sphere: float32 (n, d) embeddings and int labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = rng.standard_normal((classes, d))[labels] + 1.5 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def bench_map(q: int, n: int) -> list[str]:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    scores = rng.standard_normal((q, n))
    relevant = rng.random((q, n)) < 0.2
    relevant[:, 0] = True

    def peer() -> float:
        return float(
            np.mean([average_precision_score(r, s) for s, r in zip(scores, relevant, strict=True)])
        )

    ours_s, ours = best_of(lambda: ranking.mean_average_precision(scores, relevant))
    peer_s, theirs = best_of(peer)
    return row("mAP", f"{q}x{n}", ours_s, "sklearn AP loop", peer_s, abs(ours - theirs))


def bench_map_at_r(n: int, d: int) -> list[str]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    x, labels = clustered(n, d, classes=20, seed=1)
    eye = np.eye(n, dtype=bool)

    def ours() -> np.ndarray:
        sims = x @ x.T
        same = labels[:, None] == labels[None, :]
        report = ranking.ranking_metrics(sims, same, eye, ks=(1,))
        return np.array(
            [np.nanmean(report[key]) for key in ("map_at_r", "r_precision", "precision@1")]
        )

    calc = AccuracyCalculator(
        include=("mean_average_precision_at_r", "r_precision", "precision_at_1"),
        k="max_bin_count",
    )
    keys = ("mean_average_precision_at_r", "r_precision", "precision_at_1")

    def peer() -> np.ndarray:
        t, y = torch.from_numpy(x), torch.from_numpy(labels)
        acc = calc.get_accuracy(t, y, t, y, ref_includes_query=True)
        return np.array([acc[key] for key in keys])

    ours_s, mine = best_of(ours)
    peer_s, theirs = best_of(peer)
    diff = float(np.abs(mine - theirs).max())
    return row("MAP@R + R-prec + P@1", f"{n}x{d}", ours_s, "PML AccuracyCalculator", peer_s, diff)


def bench_knn(n_train: int, n_test: int, d: int) -> list[str]:
    from sklearn.neighbors import KNeighborsClassifier

    train, y_train = clustered(n_train + n_test, d, classes=10, seed=2)
    test, y_test = train[n_train:], y_train[n_train:]
    train, y_train = train[:n_train], y_train[:n_train]
    k, tau = 200, 0.07

    def peer() -> float:
        knn = KNeighborsClassifier(
            n_neighbors=k,
            metric="cosine",
            algorithm="brute",
            weights=lambda dist: np.exp((1.0 - dist) / tau),
        )
        return float((knn.fit(train, y_train).predict(test) == y_test).mean())

    ours_s, ours = best_of(lambda: ranking.knn_accuracy(train, y_train, test, y_test, k, tau))
    peer_s, theirs = best_of(peer)
    size = f"{n_train}/{n_test}x{d}"
    return row("weighted kNN acc", size, ours_s, "sklearn KNeighbors", peer_s, abs(ours - theirs))


def bench_sampler(n: int, classes: int, m: int, batch_size: int) -> list[str]:
    from pytorch_metric_learning.samplers import MPerClassSampler

    labels = np.random.default_rng(3).integers(0, classes, n)
    ours = MPerClassBatchSampler(labels, m, batch_size)
    theirs = MPerClassSampler(labels, m, batch_size=batch_size, length_before_new_iter=n)
    ours_s, _ = best_of(lambda: list(ours))
    peer_s, _ = best_of(lambda: list(iter(theirs)))
    return row("m-per-class epoch", f"{n} labels/{classes} cls", ours_s, "PML sampler", peer_s, 0)


def row(task: str, size: str, ours_s: float, peer: str, peer_s: float, diff: float) -> list[str]:
    return [
        task,
        size,
        f"{ours_s:.4f}",
        peer,
        f"{peer_s:.4f}",
        f"{peer_s / ours_s:.1f}x",
        f"{diff:.1e}",
    ]


def main() -> None:
    torch.set_num_threads(1)
    header = ["task", "size", "echoseek s", "peer", "peer s", "speed-up", "max |diff|"]
    with threadpool_limits(1):
        rows = [
            bench_map(445, 445),
            bench_map(2000, 5000),
            bench_map_at_r(2000, 64),
            bench_map_at_r(5000, 128),
            bench_knn(10000, 2000, 128),
            bench_sampler(100_000, 1000, 4, 64),
        ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
