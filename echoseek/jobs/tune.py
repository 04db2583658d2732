"""Hyperparameter sweeps on Ray Tune over the pretrain or finetune job (or the chain
pretrain+finetune), or over the re-ranking of an index version (``job: rerank``), tracked in
MLflow.

    echoseek tune tune/loss.local.yaml input=work/dataset fixed.pretrained=work/model_ssl
    echoseek tune tune/loss.local.yaml search=optuna num_samples=8 name=tpe output=work/sweeps/tpe
    echoseek tune tune/chain.local.yaml input=work/demo/train_dataset
    echoseek tune tune/rerank.yaml index=work/demo/index input=work/demo/val_vectors
    ray job submit --working-dir . -- python -m echoseek.jobs.tune tune/loss.yaml

Each trial runs the job's own training function (its own Ray Train workers) on the base
config with ``fixed`` and one draw of ``space`` applied, reports its held-out validation
metric every epoch, and is stopped early by ASHA. The sweep is one MLflow parent run with one
child run per trial. ``output`` gets ``results.parquet`` (one row per trial), ``best.yaml``
(``echoseek finetune best.yaml`` reruns the best trial; a chain adds ``best_pretrain.yaml``)
and the figures. Re-running the same
``name`` resumes the sweep: finished trials are not run again.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from echoseek.jobs.runner import run_job
from echoseek.sweep.config import SweepConfig as Config
from echoseek.sweep.rerank import run_rerank_sweep
from echoseek.sweep.tuner import run_sweep

__all__ = ["Config", "main", "run"]


def run(cfg: Config) -> dict[str, Any]:
    """Run or resume the sweep (``job: rerank``: score re-rank settings); returns a summary."""
    if cfg.job == "rerank":
        return run_rerank_sweep(cfg)
    return run_sweep(cfg)


def summarize(s: dict[str, Any]) -> str:
    """The closing lines for the terminal."""
    if "settings" in s:
        return summarize_rerank(s)
    metric = next(k for k in s if k.startswith("best_") and k not in ("best_trial", "best_params"))
    value = s[metric]
    lines = [
        f"swept {s['trials']} trials in {s['seconds']:.0f} s: {s['finished']} finished, "
        f"{s['stopped']} stopped early, {s['failed']} failed",
        f"best: trial {s['best_trial'] or '-'}  held-out {metric[5:]} "
        + (f"{value:.4f}" if math.isfinite(value) else "-")
        + f"  {s['best_params']}",
        f"RankMe vs held-out {metric[5:]}: Spearman rho {s['rankme_spearman']:.2f}, "
        f"RankMe {s['rankme_verdict']} here",
        f"results: {s['output']}  (MLflow parent run {s['run_id']})",
    ]
    if s.get("registered"):
        lines.append(f"registered: {s['registered']}")
    return "\n".join(lines)


def summarize_rerank(s: dict[str, Any]) -> str:
    """The closing lines of a re-ranking sweep."""
    metric = s["metric"]
    return (
        f"scored {s['settings']} re-rank settings of index version {s['index_version']} in "
        f"{s['seconds']:.0f} s\nbest: {s['best_trial']}  held-out {metric} "
        f"{s['best_' + metric]:.4f}  "
        f"p50 {s['best_latency_ms_p50']:.2f} ms  {s['best_params']}\n"
        f"results: {s['output']}  (MLflow parent run {s['run_id']})"
    )


def main(argv: Sequence[str] | None = None, prog: str = "echoseek tune") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
