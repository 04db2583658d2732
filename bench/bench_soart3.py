"""SOART3 pairwise 1024×1024 at d=128: batched torch vs the notes' per-pair scipy loop.

    .venv/bin/python bench/bench_soart3.py [--threads 1] [--pairs 20000] [--reps 5]

The batched side is ``echoseek.distances.pairwise`` (median of ``--reps`` runs, no autograd),
in float64 like scipy and in float32, the serving dtype. The per-pair loop (β, then two
``scipy.spatial.distance.minkowski`` calls per pair, as in the team's notes) is far too slow for
all 1,048,576 pairs, so it is timed on the first ``--pairs`` pairs and extrapolated linearly;
the table says so. The loop's values are checked against the batched ones on those pairs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
from scipy.spatial.distance import minkowski

from echoseek.distances import SOART3_EPS, pairwise

N, DIM = 1024, 128


def per_pair(y: np.ndarray, x: np.ndarray, p: float | None) -> float:
    beta = (np.dot(x, y) + SOART3_EPS) / (np.dot(x, x) + SOART3_EPS)
    yita = math.log(1.0 + minkowski(y, beta * x, 1))
    if p is None:
        return yita
    return yita - math.log(1.0 + minkowski(y, beta * x, p))


def loop_seconds(
    q: np.ndarray, r: np.ndarray, p: float | None, pairs: int
) -> tuple[float, np.ndarray]:
    """Per-pair scipy loop over the first ``pairs`` (row-major) pairs: seconds and values."""
    start = time.perf_counter()
    values = np.array([per_pair(q[k // N], r[k % N], p) for k in range(pairs)])
    return time.perf_counter() - start, values


def batched_seconds(
    q: torch.Tensor, r: torch.Tensor, name: str, p: float | None, reps: int
) -> tuple[float, np.ndarray]:
    params = {} if p is None else {"p": p}
    with torch.no_grad():
        out = pairwise(q, r, name, **params)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            pairwise(q, r, name, **params)
            times.append(time.perf_counter() - start)
    return statistics.median(times), out.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(N, DIM, generator=gen, dtype=torch.float64)
    r = torch.randn(N, DIM, generator=gen, dtype=torch.float64)
    total = N * N
    print(
        f"SOART3 pairwise {N}x{N}, d={DIM}, CPU, {args.threads} thread(s); the scipy loop "
        f"(float64) is timed on {args.pairs} of {total} pairs and extrapolated "
        f"x{total / args.pairs:.1f}\n"
    )
    print("| variant | dtype | batched s | scipy loop s (extrapolated) | speedup | max abs diff |")
    print("|---|---|---:|---:|---:|---:|")
    for name, p, label in (
        ("soart3_yita", None, "yita"),
        ("soart3_gamma", 4.0, "gamma p=4"),
        ("soart3_gamma", math.inf, "gamma p=inf"),
    ):
        t_loop, values = loop_seconds(q.numpy(), r.numpy(), p, args.pairs)
        t_loop_all = t_loop * total / args.pairs
        for dtype in (torch.float64, torch.float32):
            t_batched, out = batched_seconds(q.to(dtype), r.to(dtype), name, p, args.reps)
            diff = np.abs(out.reshape(-1)[: args.pairs] - values).max()
            print(
                f"| {label} | {str(dtype).removeprefix('torch.')} | {t_batched:.3f} "
                f"| {t_loop_all:.1f} | {t_loop_all / t_batched:.0f}x | {diff:.1e} |"
            )


if __name__ == "__main__":
    main()
