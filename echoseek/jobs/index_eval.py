"""Measure an index version: recall@1/10/100 and QPS over an nprobe sweep, optionally tune it.

    echoseek index eval input=work/index output=work/index_eval
    echoseek index eval input=work/index output=work/index_eval target_recall=0.95
    echoseek index eval input=work/index/v2025... queries=held_out.npy nprobes=[4,8,16,32]

``input`` is an index root (its ``LATEST`` version) or a version directory. Queries are the
first ``n_queries`` vectors of ``queries`` (held out), or a seeded sample of the stored vectors.
Writes ``eval.json``, ``eval.md`` (a markdown table) and ``recall_qps.png`` into ``output``.
With ``target_recall`` the smallest swept nprobe reaching recall@10 ≥ target (with re-rank
unless ``rerank=false``) becomes the default nprobe of a NEW version derived from the evaluated
one (shard files shared, published atomically, ``LATEST`` moved when it named the evaluated
version, ``retention`` versions kept); the summary and ``eval.json`` name it as
``published_version``. A published version never changes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoseek.errors import ConfigError
from echoseek.evaluation.ann import (
    KS,
    evaluate_index,
    rerank_option,
    summary_text,
    write_report,
)
from echoseek.index.publish import DEFAULT_RETENTION
from echoseek.index.update import publish_search_defaults
from echoseek.jobs.runner import run_job
from echoseek.storage import check_output_dir


@dataclass
class Config:
    """Options of ``echoseek index eval``."""

    input: str = ""
    output: str = "work/index_eval"
    queries: str = ""  # held-out query vectors; empty: sample stored vectors
    n_queries: int = 1000
    nprobes: list[int] = field(default_factory=list)  # empty: 1, 2, 4, ... up to nlist (256)
    ks: list[int] = field(default_factory=lambda: list(KS))
    rerank: str | bool = "auto"  # auto/true: the metric's exact distance; false: off; or a name
    rerank_depth: int = 0  # 0: max(100, 2k)
    batch_size: int = 64
    n_single: int = 200  # queries timed one at a time
    target_recall: float | None = None
    seed: int = 0
    retention: int = 3  # versions kept under the index root when tuning publishes (0: all)

    def __post_init__(self) -> None:
        if self.n_queries <= 0:
            raise ConfigError(f"n_queries: must be positive, got {self.n_queries}")
        if any(p <= 0 for p in self.nprobes):
            raise ConfigError(f"nprobes: must all be positive, got {self.nprobes}")
        if not self.ks or any(k <= 0 for k in self.ks):
            raise ConfigError(f"ks: must be positive integers, got {self.ks}")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise ConfigError(f"target_recall: must be in (0, 1], got {self.target_recall}")
        if self.batch_size <= 0 or min(self.n_single, self.rerank_depth, self.retention) < 0:
            raise ConfigError("batch_size must be positive; n_single, rerank_depth, retention >= 0")


def run(cfg: Config) -> dict[str, Any]:
    """Evaluate (and optionally tune) one index version; returns the result summary."""
    if not cfg.input:
        raise ConfigError("input is required (an index root or version directory)")
    if not cfg.output:
        raise ConfigError("output is required (a directory for eval.json/eval.md/plot)")
    result = evaluate_and_publish(
        cfg.input,
        cfg.output,
        queries=cfg.queries or None,
        n_queries=cfg.n_queries,
        nprobes=cfg.nprobes or None,
        ks=tuple(sorted(set(cfg.ks))),
        rerank=rerank_option(cfg.rerank),
        rerank_depth=cfg.rerank_depth or None,
        batch_size=cfg.batch_size,
        n_single=cfg.n_single,
        target_recall=cfg.target_recall,
        seed=cfg.seed,
        retention=cfg.retention,
    )
    return {**result, "output": cfg.output}


def evaluate_and_publish(
    path: str | Path, out_dir: str | Path, *, retention: int = DEFAULT_RETENTION, **options: Any
) -> dict[str, Any]:
    """:func:`~echoseek.evaluation.ann.evaluate_index` of the version at ``path`` (``options``
    are its keywords), then :func:`publish_tuned`, then the report in ``out_dir``.

    ``out_dir`` is checked before any work; ``result["published_version"]`` names the version
    published (None when nothing was). The evaluated version is left unchanged.
    """
    check_output_dir(out_dir)
    result = evaluate_index(path, **options)
    result["published_version"] = publish_tuned(result, retention)
    write_report(out_dir, result)
    return result


def publish_tuned(result: dict[str, Any], retention: int = DEFAULT_RETENTION) -> str | None:
    """Publish an evaluation's ``tuned_nprobe`` (with its re-rank setting) as the default of a
    new version derived from the evaluated one; its id, or None when nothing was tuned.

    :func:`~echoseek.index.update.publish_search_defaults`: files shared, published
    atomically, ``LATEST`` moved when it named the evaluated version, ``retention`` versions
    kept; the chosen row and the target are recorded as the new manifest's ``evaluation``.
    """
    tuned = result["tuned_nprobe"]
    if tuned is None:
        return None
    rerank = result["rerank"]
    chosen = next(r for r in result["rows"] if r["nprobe"] == tuned and r["rerank"] == rerank)
    manifest = publish_search_defaults(
        result["path"],
        nprobe=tuned,
        rerank=rerank,
        rerank_depth=result["rerank_depth"],
        evaluation={
            "target_recall": result["target_recall"],
            **chosen,
            "n_queries": result["n_queries"],
        },
        retention=retention,
    )
    return str(manifest["version"])


def main(argv: Sequence[str] | None = None, prog: str = "echoseek index eval") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summary_text)


if __name__ == "__main__":
    sys.exit(main())
