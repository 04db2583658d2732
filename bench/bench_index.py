"""Sharded IVF-PQ (echoseek.index) vs hnswlib HNSW at equal recall@10 on clustered vectors.

    .venv/bin/python bench/bench_index.py                 # 1 M × 128 (several minutes)
    .venv/bin/python bench/bench_index.py --n 100000      # quick run (< 1 minute)
    .venv/bin/python bench/bench_index.py --defaults --n 60000 --dim 64 --clusters 100

``--defaults``: recall@10 of ``open_index(root).search(q, 10)`` right after ``build_index``,
before (the nprobe rule, no re-rank: ``target_recall=None``, ``rerank=False``) and after
build-time calibration (measured nprobe, exact re-rank by default), and the build seconds the
calibration costs (``manifest["build"]["calibrate_s"]``; shards filled in-process).

Data: a seeded Gaussian mixture of ``--clusters`` components in 128-d, each with its own
covariance ``A_k A_kᵀ + σ²I`` (``A_k`` 128×32 with N(0, 0.35²) entries, σ = 0.3), like real
embeddings whose neighbourhoods have a lowish intrinsic dimension (at this setting HNSW M=16
needs ef ≈ 32–64 for recall@10 = 0.95, as on SIFT-1M); rows are L2-normalised, metric is
cosine (inner product).
``--queries`` held-out points of the same mixture; ground truth by exact brute force
(``faiss.IndexFlatIP``) on the float32 vectors.

echoseek: ``build_index`` with the rule-chosen parameters (``IVF{~4√N},PQ{d/4}x8``) in
``--shards`` shards filled by Ray tasks; searched with exact cosine re-rank of the best
``rerank_depth`` candidates (float16 vectors, memory-mapped); nprobe is the smallest power of
two reaching recall@10 ≥ ``--target``. HNSW (hnswlib, ``ef_construction=200``, M = 16 and 32):
ef is the smallest of a grid reaching the same target. Both use ``--threads`` threads for
building and batched search; single-query QPS is one call per query (echoseek searches its
shards concurrently when a query scans enough codes, hnswlib uses one thread). Memory: bytes
per vector of what must be in RAM (IVF-PQ shard files: codes, ids, lists; HNSW: its saved
index, vectors + graph); the re-rank vectors are listed separately (on disk, paged in on
demand).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 0.95
EF_GRID = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def mixture(
    n: int, dim: int, clusters: int, seed: int, rank: int = 32, sigma: float = 0.3
) -> np.ndarray:
    """``n`` normalised points of a Gaussian mixture, covariances ``A Aᵀ + σ²I`` (float32)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    bases = rng.normal(scale=0.35, size=(clusters, rank, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    x = np.empty((n, dim), dtype=np.float32)
    for c in range(clusters):
        rows = np.flatnonzero(labels == c)
        z = rng.normal(size=(rows.size, rank)).astype(np.float32)
        noise = sigma * rng.normal(size=(rows.size, dim)).astype(np.float32)
        x[rows] = centres[c] + z @ bases[c] + noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    import faiss

    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    return flat.search(q, k)[1]


def recall10(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [np.intersect1d(f[:10], t[:10]).size for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / 10


def qps(search: Callable[[np.ndarray], Any], q: np.ndarray, batch: int, limit: int) -> float:
    """Queries per second of ``search`` over ``q[:limit]`` in batches of ``batch``."""
    q = q[:limit]
    start = time.perf_counter()
    for s in range(0, len(q), batch):
        search(q[s : s + batch])
    return len(q) / (time.perf_counter() - start)


def bench_echoseek(
    path: Path, root: Path, q: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    import ray

    from echoseek.index import build_index, choose_params, open_index

    n, dim = np.load(path, mmap_mode="r").shape
    params = choose_params(n, dim)
    ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    manifest = build_index(path, root, params, num_shards=args.shards, use_ray=True)
    build_s = time.perf_counter() - start
    ray.shutdown()
    reader = open_index(root)
    chosen = None
    for depth in (100, 200):
        for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            _, ids = reader.search(q, 10, nprobe=nprobe, rerank=True, rerank_depth=depth)
            if recall10(ids, truth) >= args.target:
                chosen = (nprobe, depth, recall10(ids, truth))
                break
        if chosen:
            break
    if chosen is None:
        raise SystemExit(f"echoseek: recall@10 {args.target} not reached up to nprobe 256")
    nprobe, depth, rec = chosen

    def search(batch: np.ndarray) -> Any:
        return reader.search(batch, 10, nprobe=nprobe, rerank=True, rerank_depth=depth)

    files = [root / manifest["version"] / s["file"] for s in manifest["shards"]]
    vectors = [root / manifest["version"] / s["vectors"]["file"] for s in manifest["shards"]]
    return {
        "name": f"echoseek {manifest['factory']} ×{len(files)} shards, rerank {depth}",
        "build_s": build_s,
        "train_s": manifest["build"]["train_s"],
        "knob": f"nprobe={nprobe}",
        "recall": rec,
        "qps1": qps(search, q, 1, args.single),
        "qps64": qps(search, q, 64, len(q)),
        "bytes": sum(f.stat().st_size for f in files) / n,
        "extra_bytes": sum(f.stat().st_size for f in vectors) / n,
    }


def bench_defaults(
    path: Path, root: Path, q: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> str:
    """Default search right after build: the old defaults vs the build-measured ones."""
    from echoseek.index import build_index, choose_params, open_index

    n, dim = np.load(path, mmap_mode="r").shape
    params = choose_params(n, dim)
    lines = [
        f"{n:,} × {dim} vectors, {args.clusters} clusters, {len(q)} held-out queries, "
        f"{params.factory}, {args.threads} threads",
        "",
        "| defaults | nprobe | rerank | recall@10 | QPS 1 query | build s | calibrate s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, target in (("before: nprobe rule, no re-rank", None), ("after: measured", 0.9)):
        start = time.perf_counter()
        manifest = build_index(
            path, root / str(target), params, seed=args.seed, use_ray=False, target_recall=target
        )
        build_s = time.perf_counter() - start
        with open_index(root / str(target)) as reader:
            rerank = None if target else False  # None: the version's default

            def search(batch: np.ndarray, reader: Any = reader, rerank: Any = rerank) -> Any:
                return reader.search(batch, 10, rerank=rerank)

            rec = recall10(search(q)[1], truth)
            shown = (reader.default_rerank or "off") if target else "off"
            lines.append(
                f"| {label} | {reader.default_nprobe} | {shown} | {rec:.3f} | "
                f"{qps(search, q, 1, args.single):.0f} | {build_s:.1f} | "
                f"{manifest['build'].get('calibrate_s', 0.0):.2f} |"
            )
    return "\n".join(lines)


def bench_hnsw(
    x: np.ndarray, q: np.ndarray, truth: np.ndarray, m: int, args: argparse.Namespace
) -> dict[str, Any]:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=x.shape[1])
    start = time.perf_counter()
    index.init_index(max_elements=len(x), ef_construction=200, M=m, random_seed=args.seed)
    index.add_items(x, np.arange(len(x)), num_threads=args.threads)
    build_s = time.perf_counter() - start
    chosen = None
    for ef in EF_GRID:
        index.set_ef(ef)
        rec = recall10(index.knn_query(q, k=10, num_threads=args.threads)[0], truth)
        if rec >= args.target:
            chosen = (ef, rec)
            break
    if chosen is None:
        raise SystemExit(f"hnsw M={m}: recall@10 {args.target} not reached up to ef 1024")
    ef, rec = chosen
    with tempfile.TemporaryDirectory() as tmp:
        index.save_index(os.path.join(tmp, "hnsw.bin"))
        size = os.path.getsize(os.path.join(tmp, "hnsw.bin"))
    return {
        "name": f"hnswlib HNSW M={m}, ef_construction=200",
        "build_s": build_s,
        "train_s": 0.0,
        "knob": f"ef={ef}",
        "recall": rec,
        "qps1": qps(lambda b: index.knn_query(b, k=10, num_threads=1), q, 1, args.single),
        "qps64": qps(lambda b: index.knn_query(b, k=10, num_threads=args.threads), q, 64, len(q)),
        "bytes": size / len(x),
        "extra_bytes": 0.0,
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        "| method | build s | recall@10 | knob | QPS 1 query | QPS batch 64 | RAM B/vector "
        "| + re-rank vectors on disk |"
    )
    lines = [
        f"{args.n:,} × {args.dim} vectors, {args.clusters} clusters, {args.q} "
        f"queries, target recall@10 ≥ {args.target}, {args.threads} threads",
        "",
        head,
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['build_s']:.1f} | {r['recall']:.3f} | {r['knob']} | "
            f"{r['qps1']:.0f} | {r['qps64']:.0f} | {r['bytes']:.1f} | {r['extra_bytes']:.0f} |"
        )
    ours = rows[0]
    lines += [
        "",
        "| vs | QPS 1 query ratio | QPS batch ratio | memory ratio |",
        "|---|---|---|---|",
    ]
    for r in rows[1:]:
        lines.append(
            f"| echoseek / {r['name'].split(',')[0]} | {ours['qps1'] / r['qps1']:.2f} | "
            f"{ours['qps64'] / r['qps64']:.2f} | {ours['bytes'] / r['bytes']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", dest="q", type=int, default=1000)
    parser.add_argument("--single", type=int, default=500, help="queries timed one by one")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", type=float, default=TARGET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--defaults", action="store_true", help="default search after build")
    args = parser.parse_args()

    # Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed box spinning
    # faiss threads slow batched search ~5-10x (set before faiss loads its OpenMP runtime).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import faiss

    faiss.omp_set_num_threads(args.threads)
    data = mixture(args.n + args.q, args.dim, args.clusters, args.seed)
    x, q = data[: args.n], data[args.n :]
    truth = exact_top(x, q, 10)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        if args.defaults:
            print(bench_defaults(Path(tmp) / "x.npy", Path(tmp) / "index", q, truth, args))
            return
        rows = [bench_echoseek(Path(tmp) / "x.npy", Path(tmp) / "index", q, truth, args)]
        rows += [bench_hnsw(x, q, truth, m, args) for m in (16, 32)]
    print(table(rows, args))


if __name__ == "__main__":
    main()
