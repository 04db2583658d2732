"""Index evaluation: recall against exact search, speed, size, and nprobe tuning.

For a set of queries (held-out vectors, or a seeded sample of the stored ones) the ground
truth is an exact brute-force search (:func:`~echoseek.index.recall.exact_knn`, streamed
chunk by chunk over the stored float16 vectors, tombstones excluded). For every ``nprobe`` of
a sweep, with and without exact re-rank:

* ``recall@k = |A_k ∩ G_k| / k`` averaged over queries, where ``A_k`` is the index's top-k and
  ``G_k`` the exact top-k (the "k-recall@k" of the ANN benchmarks; recall@1 is the fraction of
  queries whose nearest neighbour comes first); recall@1 and @10 come from one ``k=10``
  search, recall@100 from a ``k=100`` search;
* QPS for single-query calls and for batches (``batch_size`` queries per call), ``k=10``;
* bytes per vector of the shard files (codes + ids + lists), of the re-rank vectors and of the
  metadata.

:func:`smallest_nprobe` picks the cheapest ``nprobe`` whose recall@10 reaches a target;
``evaluate_index(target_recall=…)`` reports it as ``tuned_nprobe``. Evaluation only reads the
version and returns results: publishing the tuned defaults as a new version is the job's
(``echoseek index eval``, :mod:`echoseek.jobs.index_eval`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.data.vectors import iter_vector_batches
from echoseek.errors import InputError
from echoseek.index.reader import IndexReader, open_index
from echoseek.index.recall import default_nprobes, exact_knn, knn_recall, sample_ids
from echoseek.index.rerank import NATURAL_DISTANCE
from echoseek.storage import make_dirs, write_bytes_atomic, write_json_atomic

KS = (1, 10, 100)
QPS_K = 10


def sample_queries(reader: IndexReader, n: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``n`` live stored vectors (float32) to use as queries."""
    return reader.fetch_vectors(sample_ids(reader, n, seed))


def load_queries(path: str | Path, n: int, dim: int) -> np.ndarray:
    """The first ``n`` vectors of a vector input (artifact, ``.npy`` or folder)."""
    parts = [b.vectors for b in iter_vector_batches(path, batch_size=min(n, 1 << 16), stop=n)]
    x = np.concatenate(parts)
    if x.shape[1] != dim:
        raise InputError(f"{path}: queries have dim {x.shape[1]} but the index has dim {dim}")
    return x


def time_search(
    reader: IndexReader,
    queries: np.ndarray,
    *,
    k: int = QPS_K,
    nprobe: int | None = None,
    rerank: str | bool = False,
    batch_size: int = 64,
    n_single: int = 200,
) -> tuple[float, float]:
    """``(single-query QPS, batched QPS)`` of ``reader.search`` on ``queries``."""
    single = queries[:n_single]
    t0 = time.perf_counter()
    for i in range(len(single)):
        reader.search(single[i : i + 1], k, nprobe=nprobe, rerank=rerank)
    qps_single = len(single) / max(time.perf_counter() - t0, 1e-9)
    t0 = time.perf_counter()
    for s in range(0, len(queries), batch_size):
        reader.search(queries[s : s + batch_size], k, nprobe=nprobe, rerank=rerank)
    qps_batch = len(queries) / max(time.perf_counter() - t0, 1e-9)
    return qps_single, qps_batch


def sweep(
    reader: IndexReader,
    queries: np.ndarray,
    truth: np.ndarray,
    nprobes: Sequence[int],
    reranks: Sequence[str | None],
    *,
    ks: Sequence[int] = KS,
    rerank_depth: int | None = None,
    batch_size: int = 64,
    n_single: int = 200,
) -> list[dict[str, Any]]:
    """One row per (nprobe, rerank): recall@k for ``ks``, QPS single and batched."""
    rows = []
    for rerank in reranks:
        for nprobe in nprobes:
            row: dict[str, Any] = {"nprobe": int(nprobe), "rerank": rerank}
            for k_search in sorted({min(max(ks), 10), max(ks)}):
                _, found = reader.search(queries, k_search, nprobe, rerank or False, rerank_depth)
                for k in (k for k in ks if k <= k_search and f"recall@{k}" not in row):
                    row[f"recall@{k}"] = knn_recall(found, truth, k)
            row["qps_single"], row["qps_batch"] = time_search(
                reader,
                queries,
                nprobe=nprobe,
                rerank=rerank or False,
                batch_size=batch_size,
                n_single=n_single,
            )
            rows.append(row)
    return rows


def smallest_nprobe(
    rows: Sequence[dict[str, Any]], target: float, k: int = 10, rerank: str | None = None
) -> int | None:
    """The smallest swept ``nprobe`` whose recall@k ≥ ``target`` (for that rerank), or None."""
    hits = [r["nprobe"] for r in rows if r["rerank"] == rerank and r[f"recall@{k}"] >= target]
    return min(hits) if hits else None


def storage_bytes(reader: IndexReader) -> dict[str, float]:
    """Bytes per stored vector of the shard files, re-rank vectors and metadata."""
    n = max(1, reader.ntotal)
    shards = reader.manifest["shards"]

    def size(key: str | None) -> float:
        files = [s["file"] if key is None else s[key]["file"] for s in shards]
        return sum((reader.path / f).stat().st_size for f in files) / n

    return {
        "index_bytes_per_vector": size(None),
        "rerank_bytes_per_vector": size("vectors"),
        "metadata_bytes_per_vector": size("metadata"),
    }


def evaluate_index(
    path: str | Path,
    *,
    queries: str | Path | None = None,
    n_queries: int = 1000,
    nprobes: Sequence[int] | None = None,
    ks: Sequence[int] = KS,
    rerank: str | bool = True,
    rerank_depth: int | None = None,
    batch_size: int = 64,
    n_single: int = 200,
    target_recall: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate the version at ``path``; the result, JSON-ready. Reads only.

    Rows sweep ``nprobes`` without re-rank and, when ``rerank`` is on, with it (``rerank``:
    the re-rank distance of those rows, or None; ``rerank_depth`` as given). With
    ``target_recall``, ``tuned_nprobe`` is the smallest swept nprobe reaching recall@10 ≥
    target (with re-rank when it is on), or None.
    """
    if n_queries <= 0:
        raise InputError(f"n_queries: must be positive, got {n_queries}")
    ks = sorted(set(ks) | {10})  # recall@10 drives tuning and the plot
    with open_index(path) as reader:
        q = (
            load_queries(queries, n_queries, reader.dim)
            if queries
            else sample_queries(reader, n_queries, seed)
        )
        _, truth = exact_knn(reader, q, max(ks))
        name = _rerank_name(reader, rerank)
        probes = sorted(set(nprobes)) if nprobes else default_nprobes(reader.nlist)
        rows = sweep(
            reader,
            q,
            truth,
            probes,
            [None] if name is None else [None, name],
            ks=ks,
            rerank_depth=rerank_depth,
            batch_size=batch_size,
            n_single=n_single,
        )
        return {
            **_result(reader, rows, len(q), target_recall, name),
            "rerank": name,
            "rerank_depth": rerank_depth,
        }


def write_report(out_dir: str | Path, result: dict[str, Any]) -> dict[str, str]:
    """Write ``eval.json``, ``eval.md`` and ``recall_qps.png`` into ``out_dir``."""
    out = Path(out_dir)
    make_dirs(out)
    write_json_atomic(out / "eval.json", result)
    write_bytes_atomic(out / "eval.md", markdown_table(result).encode())
    plot_recall_qps(result["rows"], out / "recall_qps.png")
    return {name: str(out / name) for name in ("eval.json", "eval.md", "recall_qps.png")}


def markdown_table(result: dict[str, Any]) -> str:
    """The sweep as a markdown table, with a header naming the version."""
    ks = [k for k in KS if f"recall@{k}" in result["rows"][0]]
    head = ["nprobe", "rerank", *(f"recall@{k}" for k in ks), "QPS (1 query)", "QPS (batch)"]
    lines = [
        f"index {result['version']} ({result['factory']}, {result['ntotal']} vectors, "
        f"{result['n_queries']} queries, {result['index_bytes_per_vector']:.1f} B/vector)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in result["rows"]:
        cells = [str(r["nprobe"]), r["rerank"] or "-"]
        cells += [f"{r[f'recall@{k}']:.3f}" for k in ks]
        cells += [f"{r['qps_single']:.0f}", f"{r['qps_batch']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("published_version"):
        lines += ["", _tuned_line(result)]
    return "\n".join(lines) + "\n"


def summary_text(result: dict[str, Any]) -> str:
    """The terminal summary of an evaluation: best recall, and what tuning published."""
    best = max(result["rows"], key=lambda r: r.get("recall@10", 0.0))
    lines = [
        f"evaluated {result['version']} ({result['factory']}) on {result['n_queries']} queries"
        f" -> {result.get('output', '')}",
        f"best recall@10 {best.get('recall@10', float('nan')):.3f} at nprobe {best['nprobe']}"
        f" (rerank {best['rerank'] or 'off'})",
    ]
    if result["target_recall"] is not None:
        lines.append(
            _tuned_line(result)
            if result.get("published_version")
            else f"no swept nprobe reaches recall@10 >= {result['target_recall']}; "
            "nothing published"
        )
    return "\n".join(lines)


def rerank_option(value: str | bool) -> str | bool:
    """A config's ``rerank`` to ``evaluate_index``'s: ``auto`` → True, off words → False."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("auto", "true", "on", "yes"):
        return True
    if text in ("", "false", "off", "no", "none"):
        return False
    return value.strip()


def plot_recall_qps(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Recall@10 against batched QPS, one line per re-rank setting, nprobe annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for rerank in dict.fromkeys(r["rerank"] for r in rows):
        sel = [r for r in rows if r["rerank"] == rerank]
        xs, ys = [r["recall@10"] for r in sel], [r["qps_batch"] for r in sel]
        ax.plot(xs, ys, marker="o", label=f"rerank={rerank or 'off'}")
        for r, x, y in zip(sel, xs, ys, strict=True):
            ax.annotate(str(r["nprobe"]), (x, y), fontsize=7)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries / s (batched)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _result(
    reader: IndexReader,
    rows: list[dict[str, Any]],
    n_queries: int,
    target: float | None,
    rerank: str | None,
) -> dict[str, Any]:
    return {
        "version": reader.version,
        "path": str(reader.path),
        "factory": reader.manifest["factory"],
        "ntotal": reader.ntotal,
        "live": reader.live,
        "n_queries": n_queries,
        **storage_bytes(reader),
        "rows": rows,
        "target_recall": target,
        "tuned_nprobe": smallest_nprobe(rows, target, 10, rerank) if target is not None else None,
    }


def _tuned_line(result: dict[str, Any]) -> str:
    return (
        f"default nprobe set to {result['tuned_nprobe']} in new version "
        f"{result['published_version']} (from {result['version']})"
    )


def _rerank_name(reader: IndexReader, rerank: str | bool) -> str | None:
    if rerank is False or rerank == "":
        return None
    if rerank is True:
        return NATURAL_DISTANCE[reader.metric]
    return str(rerank)
