"""Measure an index version: recall@1/10/100 and QPS over an nprobe sweep, optionally tune it.

    echoseek index eval input=work/index output=work/index_eval
    echoseek index eval input=work/index output=work/index_eval target_recall=0.95
    echoseek index eval input=work/index/v2025... queries=held_out.npy nprobes=[4,8,16,32]

``input`` is an index root (its ``LATEST`` version) or a version directory. Queries are the
first ``n_queries`` vectors of ``queries`` (held out), or a seeded sample of the stored vectors.
Writes ``eval.json``, ``eval.md`` (a markdown table) and ``recall_qps.png`` into ``output``.
With ``target_recall`` the smallest swept nprobe reaching recall@10 ≥ target (with re-rank
unless ``rerank=false``) becomes the version's default nprobe (manifest rewritten atomically).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from echoseek.errors import ConfigError
from echoseek.evaluation.ann import KS, evaluate_index
from echoseek.jobs.runner import run_job


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

    def __post_init__(self) -> None:
        if self.n_queries <= 0:
            raise ConfigError(f"n_queries: must be positive, got {self.n_queries}")
        if any(p <= 0 for p in self.nprobes):
            raise ConfigError(f"nprobes: must all be positive, got {self.nprobes}")
        if not self.ks or any(k <= 0 for k in self.ks):
            raise ConfigError(f"ks: must be positive integers, got {self.ks}")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise ConfigError(f"target_recall: must be in (0, 1], got {self.target_recall}")
        if self.batch_size <= 0 or self.n_single < 0 or self.rerank_depth < 0:
            raise ConfigError("batch_size must be positive; n_single, rerank_depth >= 0")


def rerank_option(value: str | bool) -> str | bool:
    """Config value to ``evaluate_index``'s ``rerank``: ``auto`` → True, off words → False."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("auto", "true", "on", "yes"):
        return True
    if text in ("", "false", "off", "no", "none"):
        return False
    return value.strip()


def run(cfg: Config) -> dict[str, Any]:
    """Evaluate (and optionally tune) one index version; returns the result summary."""
    if not cfg.input:
        raise ConfigError("input is required (an index root or version directory)")
    if not cfg.output:
        raise ConfigError("output is required (a directory for eval.json/eval.md/plot)")
    result = evaluate_index(
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
    )
    return {**result, "output": cfg.output}


def summarize(s: dict[str, Any]) -> str:
    """The markdown table plus where it was written."""
    best = max(s["rows"], key=lambda r: r.get("recall@10", 0.0))
    lines = [
        f"evaluated {s['version']} ({s['factory']}) on {s['n_queries']} queries -> {s['output']}",
        f"best recall@10 {best.get('recall@10', float('nan')):.3f} at nprobe {best['nprobe']}"
        f" (rerank {best['rerank'] or 'off'})",
    ]
    if s["target_recall"] is not None:
        tuned = s["tuned_nprobe"]
        lines.append(
            f"default nprobe set to {tuned}"
            if tuned is not None
            else f"no swept nprobe reaches recall@10 >= {s['target_recall']}; default unchanged"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek index eval") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
