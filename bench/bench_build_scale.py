"""`echoseek index build` at growing N: stage times, driver and task peak memory, recall.

    .venv/bin/python bench/bench_build_scale.py --sizes 1000000 3000000      # ~25 min here
    .venv/bin/python bench/bench_build_scale.py --sizes 200000 --queries 200  # quick check
    git worktree add /tmp/before <commit>      # and the same builds by the code before a change:
    .venv/bin/python bench/bench_build_scale.py --sizes 1000000 --baseline-src /tmp/before

For each N, a vectors artifact of N × ``--dim`` points of the clustered mixture of
bench_index.py (string ids ``v<row>``, 2^18 rows per Parquet file) is written once under
``--work`` and kept. Then the real command runs in its own process against a local Ray of
``--cpus`` CPUs, exactly as a user runs it:

    echoseek index build --json input=<vectors> output=<root> build.train_cpus=<cpus>

with the rule-chosen IVF-PQ parameters and one shard per 10^6 rows. From its JSON summary:
each stage's wall time (check, sample, train, fill, calibrate; publish is the rest), the
driver's peak RSS (the command's own process) and every fill task's peak RSS (a fresh worker
per task), against its rows; bytes per vector of the shard files (codes, ids, lists) and of
the float16 re-rank copies. Recall@10 at the version's default nprobe with its default exact
re-rank, on ``--queries`` held-out points of the same mixture, against an exact brute-force
search over the N float32 vectors (done here, streamed, not by the build).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from bench_index import recall10

CLUSTERS = 1000
CHUNK = 1 << 18


def vectors_artifact(path: Path, n: int, dim: int) -> Path:
    """``n`` mixture points with ids, written once (chunk by chunk, one seed per chunk)."""
    from echoseek.data.vectors import write_vectors

    if (path / "vectors.json").is_file():
        return path

    def batches() -> Iterator[tuple[list[str], np.ndarray]]:
        for s in range(0, n, CHUNK):
            e = min(n, s + CHUNK)
            x = mixture_chunk(e - s, dim, seed=1 + s // CHUNK)
            yield [f"v{i}" for i in range(s, e)], x

    write_vectors(path, batches(), dim, model_uri="bench", rows_per_file=CHUNK)
    return path


def mixture_chunk(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` points of the one mixture (centres fixed by seed 0), drawn with ``seed``."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLUSTERS, dim)).astype(np.float32)
    bases = rng.normal(scale=0.35, size=(CLUSTERS, 32, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLUSTERS, n)
    x = 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    z = rng.normal(size=(n, 32)).astype(np.float32)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        x[rows] += centres[c] + z[rows] @ bases[c]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_truth(vectors: Path, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-``k`` row numbers of ``q`` over the artifact, streamed in chunks."""
    import faiss

    from echoseek.data.vectors import iter_vector_batches
    from echoseek.index.merge import merge_topk

    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    start = 0
    for batch in iter_vector_batches(vectors, batch_size=CHUNK):
        flat = faiss.IndexFlatIP(q.shape[1])
        flat.add(batch.vectors)
        s, i = flat.search(q, k)
        best_s, best_i = merge_topk([best_s, s], [best_i, i + start], k)
        start += len(batch.ids)
    return best_i


BASELINE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from echoseek.cli import main
code = main(["index", "build", "--json", *sys.argv[2:]])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"driver_peak_rss_mib": int(hwm.split()[1]) / 1024}))
sys.exit(code)
"""


def build(vectors: Path, root: Path, cpus: int, baseline: Path | None = None) -> dict[str, Any]:
    """The real command in its own process; its JSON summary and wall time. ``baseline``: the
    same command from another checkout's ``echoseek`` (e.g. the code before a change), its
    driver's peak read the same way (``VmHWM``) by a wrapper."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    config = [f"input={vectors}", f"output={root}", "build.retention=1"]
    if baseline is None:
        exe = str(Path(sys.executable).parent / "echoseek")
        args = [exe, "index", "build", "--json", *config, f"build.train_cpus={cpus}"]
    else:
        args = [sys.executable, "-c", BASELINE, str(baseline.resolve()), *config]
    start = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - start
    lines = out.strip().splitlines()
    peak = json.loads(lines.pop()) if baseline is not None else {}
    text = "\n".join(lines)
    return {**json.loads(text[text.index("{") :]), **peak, "wall_s": wall}


def baseline_row(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """The build of the same vectors by ``--baseline-src``'s code (its summary's keys)."""
    vectors = vectors_artifact(args.work / f"vectors-{n}", n, args.dim)
    s = build(vectors, args.work / f"baseline-{n}", args.cpus, args.baseline_src)
    keys = ("train_s", "fill_s", "calibrate_s")
    return {
        "code": str(args.baseline_src), "n": n, "factory": s["factory"], "shards": s["shards"],
        **{k: round(s.get(k, 0.0), 1) for k in keys},
        "build_s": round(s["seconds"], 1), "driver_peak_mib": round(s["driver_peak_rss_mib"]),
    }  # fmt: skip


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    from echoseek.index import open_index

    vectors = vectors_artifact(args.work / f"vectors-{n}", n, args.dim)
    s = build(vectors, args.work / f"index-{n}", args.cpus)
    q = mixture_chunk(args.queries, args.dim, seed=10**6)
    truth = exact_truth(vectors, q, 10)
    with open_index(args.work / f"index-{n}") as index:
        ids = index.search(q, 10)[1]
        external = index.lookup(ids.ravel().tolist())
    found = np.array([int(r["id"][1:]) for r in external]).reshape(ids.shape)
    version = args.work / f"index-{n}" / s["version"]
    fills = s["shard_fills"]
    stages = ("check_s", "sample_s", "train_s", "fill_s", "calibrate_s")
    return {
        "n": n,
        "dim": s["dim"],
        "nlist": nlist_of(s["factory"]),
        "factory": s["factory"],
        "shards": s["shards"],
        "train_size": s["train_size"],
        **{k: round(s.get(k, 0.0), 1) for k in stages},
        "publish_s": round(s["seconds"] - sum(s.get(k, 0.0) for k in stages), 1),
        "build_s": round(s["seconds"], 1),
        "wall_s": round(s["wall_s"], 1),
        "driver_peak_mib": round(s["driver_peak_rss_mib"]),
        "fill_peak_mib": round(max(f["peak_rss_mib"] for f in fills)),
        "fill_rows": max(f["rows"] for f in fills),
        "fill_s_max": round(max(f["seconds"] for f in fills), 1),
        "index_bytes_per_vector": round(_bytes(version, "shard-*.faiss") / n, 1),
        "rerank_bytes_per_vector": round(_bytes(version, "shard-*.vectors.npy") / n, 1),
        "default_nprobe": s["default_nprobe"],
        "recall@10": round(recall10(found, truth), 3),
    }


NITER = 25  # faiss's k-means iterations (ClusteringParameters.niter)


def fit(rows: list[dict[str, Any]], cpus: int) -> dict[str, float]:
    """Rates of the time-and-memory model, from the runs (medians over them):

    * train: ``2·n_train·nlist·d·niter`` FLOP of k-means on ``cpus`` threads → FLOP/s per core;
    * fill: ``2·rows·(nlist + 256)·d`` FLOP per shard task (coarse assignment + PQ encoding),
      one core each, timed by the slowest shard → FLOP/s per core;
    * check and calibrate: seconds per shard task round (``ceil(shards / cpus)`` rounds);
    * fill task memory: ``peak = a + b·rows`` (MiB), a line through the runs' largest shards.
    """

    def med(values: list[float]) -> float:
        return float(np.median(values))

    rounds = [math.ceil(r["shards"] / cpus) for r in rows]
    train = [
        2 * r["train_size"] * r["nlist"] * r["dim"] * NITER / r["train_s"] / cpus for r in rows
    ]
    fill = [2 * r["fill_rows"] * (r["nlist"] + 256) * r["dim"] / r["fill_s_max"] for r in rows]
    x, y = np.array([r["fill_rows"] for r in rows]), np.array([r["fill_peak_mib"] for r in rows])
    b, a = np.polyfit(x, y, 1) if len(set(x.tolist())) > 1 else (0.0, float(y.max()))
    return {
        "train_flops_per_core": med(train),
        "fill_flops_per_core": med(fill),
        "check_s_per_round": med([r["check_s"] / k for r, k in zip(rows, rounds, strict=True)]),
        "calibrate_s_per_round": med(
            [r["calibrate_s"] / k for r, k in zip(rows, rounds, strict=True)]
        ),
        "fill_peak_base_mib": float(a),
        "fill_peak_bytes_per_row": float(b * 2**20),
    }


def project(
    rates: dict[str, float], n: int, nodes: int, cores: int, gpu_flops: float, io_bps: float
) -> dict[str, Any]:
    """Stage times at ``n`` × 128 (rule-chosen parameters, 10^6 rows per shard) on ``nodes`` ×
    ``cores``: k-means on one node's cores (or a GPU of ``gpu_flops``), the fill tasks one
    core each in ``ceil(shards / cores)`` rounds, and the bytes read and written (input
    float32, re-rank float16, codes) at ``io_bps`` of shared-storage bandwidth in all."""
    from echoseek.index.params import choose_params

    p = choose_params(n, 128)
    shards, cpus = math.ceil(n / 1e6), nodes * cores
    rounds = math.ceil(shards / cpus)
    train_flop = 2 * p.train_size * p.nlist * 128 * NITER
    train_s = train_flop / (gpu_flops or rates["train_flops_per_core"] * cores)
    # an HNSW coarse quantizer (nlist >= 2^16) visits ~ef·M centroids, not all of them; its
    # per-distance cost is not BLAS's (no run here used one): the 10^9 fill is optimistic
    assign = min(p.nlist, 64 * 32) if p.hnsw_coarse else p.nlist
    fill_s = rounds * 2 * 1e6 * (assign + 256) * 128 / rates["fill_flops_per_core"]
    io_s = n * (4 * 128 + 2 * 128 + p.bytes_per_vector) / io_bps
    stages = {
        "check_s": rounds * rates["check_s_per_round"],
        "train_s": train_s,
        "fill_s": fill_s,
        "calibrate_s": rounds * rates["calibrate_s_per_round"],
        "io_s": io_s,
    }
    peak = rates["fill_peak_base_mib"] * 2**20 + rates["fill_peak_bytes_per_row"] * 1e6
    return {
        "n": n, "factory": p.factory, "train_size": p.train_size, "shards": shards,
        "k-means": "gpu" if gpu_flops else f"{cores} cores",
        **{k: round(v) for k, v in stages.items()},
        "total_min": round(sum(stages.values()) / 60, 1),
        "fill_task_peak_gib": round(peak / 2**30, 2),
        "fill_tasks_per_node_gib": round(cores * peak / 2**30, 1),
        "train_task_gib": round((12 * 128 * p.train_size + 4 * p.trained_bytes) / 2**30 + 0.3, 1),
        "index_gb": n * p.bytes_per_vector / 1e9, "rerank_gb": n * 128 * 2 / 1e9,
    }  # fmt: skip


def nlist_of(factory: str) -> int:
    """The list count of an ``IVF{nlist}[_HNSW32],PQ…`` factory string."""
    return int(factory.split(",")[0][3:].split("_")[0])


def _bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--work", type=Path, default=Path("work/bench-build-scale"))
    parser.add_argument("--rows", type=Path, help="fit and project from these JSON lines only")
    parser.add_argument(
        "--baseline-src", type=Path, help="also build each size with this checkout's code"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.rows:
        lines = [json.loads(line) for line in args.rows.read_text().splitlines() if line]
        rows = [r for r in lines if "recall@10" in r]
        baselines = [r for r in lines if "code" in r]
        for row in rows:  # lines of a run before these keys were printed
            row.setdefault("dim", args.dim)
            row.setdefault("nlist", nlist_of(row["factory"]))
    else:
        rows, baselines = [], []
        for n in args.sizes:
            rows.append(measure(n, args))
            print(json.dumps(rows[-1]), flush=True)
            if args.baseline_src:
                baselines.append(baseline_row(n, args))
                print(json.dumps(baselines[-1]), flush=True)
    rates = fit(rows, args.cpus)
    print(json.dumps({"fitted": rates}))
    # 4 nodes x 32 cores x 128 GiB; an H100 at ~20 TFLOP/s (fp32); 1 GB/s of shared storage
    projected = [
        project(rates, n, nodes=4, cores=32, gpu_flops=gpu, io_bps=1e9)
        for n in (10**8, 10**9)
        for gpu in (0.0, 20e12)
    ]
    for row in projected:
        print(json.dumps(row, default=str))
    print(markdown(rows, baselines, projected))


def markdown(
    rows: list[dict[str, Any]], baselines: list[dict[str, Any]], projected: list[dict[str, Any]]
) -> str:
    """The runs, the baseline beside them and the projection as markdown tables."""
    cols = ["n", "factory", "shards", "check_s", "sample_s", "train_s", "fill_s",
            "calibrate_s", "build_s", "driver_peak_mib", "fill_peak_mib", "fill_rows",
            "index_bytes_per_vector", "default_nprobe", "recall@10"]  # fmt: skip
    out = [table(cols, rows)]
    if baselines:
        before = {b["n"]: b for b in baselines}
        pairs = [
            {"n": r["n"], "build_s": r["build_s"], "before_build_s": before[r["n"]]["build_s"],
             "driver_peak_mib": r["driver_peak_mib"],
             "before_driver_peak_mib": before[r["n"]]["driver_peak_mib"],
             "driver_ratio": round(before[r["n"]]["driver_peak_mib"] / r["driver_peak_mib"], 1)}
            for r in rows if r["n"] in before
        ]  # fmt: skip
        out.append(table(list(pairs[0]), pairs) if pairs else "")
    pcols = ["n", "factory", "k-means", "check_s", "train_s", "fill_s", "calibrate_s", "io_s",
             "total_min", "fill_task_peak_gib", "fill_tasks_per_node_gib",
             "train_task_gib"]  # fmt: skip
    out.append(table(pcols, projected))
    return "\n\n".join(out)


def table(cols: list[str], rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
