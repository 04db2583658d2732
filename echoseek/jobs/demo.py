"""The end-to-end demo on phantom ultrasound data: the first thing a new user runs.

    make demo                       # = echoseek demo work_dir=work/demo
    echoseek demo frames=200 seed=3

Stages: phantom cine -> ingest -> raw-pixel baseline evaluation -> embed (Ray Data) -> index
build (Ray tasks) -> index eval (recall against brute force, query latency), then a short
summary of what was measured and where every output went. Each stage is the same job a user
runs by hand (``echoseek phantom``, ``ingest``, ``evaluate``, ``embed``, ``index build``,
``index eval``). The demo corpus is small, so the index rules choose an exact Flat index.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoseek.config import load_config
from echoseek.errors import ConfigError
from echoseek.jobs import embed, evaluate, index_build, index_eval, ingest, phantom
from echoseek.jobs.runner import run_job


@dataclass
class Config:
    """Options of ``echoseek demo``."""

    input: str | None = None  # unused: the demo makes its own data
    output: str | None = None  # defaults to work_dir
    work_dir: str = "work/demo"
    frames: int = 445
    seed: int = 0

    def __post_init__(self) -> None:
        if self.frames < 20:
            raise ConfigError(
                f"frames must be at least 20 for a meaningful demo, got {self.frames}"
            )


def _stage(
    name: str, fn: Callable[[], dict[str, Any]], timings: dict[str, float]
) -> dict[str, Any]:
    print(f"[demo] {name} ...", flush=True)
    start = time.perf_counter()
    out = fn()
    timings[name] = time.perf_counter() - start
    print(f"[demo] {name} done in {timings[name]:.1f} s", flush=True)
    return out


def run(cfg: Config) -> dict[str, Any]:
    """Run every stage into ``work_dir`` (outputs are replaced on each run)."""
    work = Path(cfg.output or cfg.work_dir)
    raw, dataset, evaluation = work / "phantom", work / "dataset", work / "eval"
    timings: dict[str, float] = {}
    phantom_cfg = load_config(
        phantom.Config,
        None,
        [f"output={raw}", f"frames={cfg.frames}", f"seed={cfg.seed}", "overwrite=true"],
    )
    _stage("phantom", lambda: phantom.run(phantom_cfg), timings)
    ingest_cfg = ingest.Config(
        input=str(raw / "dataset.mat"),
        labels=str(raw / "dataset_labels.csv"),
        output=str(dataset),
        frame_axis=2,  # the phantom writes MATLAB's H x W x N
        overwrite=True,
    )
    desc = _stage("ingest", lambda: ingest.run(ingest_cfg), timings)
    eval_cfg = evaluate.Config(
        input=str(dataset), query=str(raw / "invivo.png"), output=str(evaluation)
    )
    baseline = _stage("baseline evaluate", lambda: evaluate.run(eval_cfg), timings)
    index = _index_stages(work, dataset, timings)
    return {
        "work_dir": str(work),
        "frames": desc["count"],
        "positives": baseline["positives"],
        "positive_ratio": baseline["positive_ratio"],
        "baseline": {
            "loo_map": baseline["leave_one_out"]["map"],
            "query": baseline.get("query", {}),
            "latency_ms": baseline["latency"]["median_ms"],
        },
        "index": index["summary"],
        "outputs": {
            "phantom": str(raw),
            "dataset": str(dataset),
            "baseline_metrics": str(evaluation / "metrics.json"),
            **index["outputs"],
        },
        "timings_s": timings,
    }


def _index_stages(work: Path, dataset: Path, timings: dict[str, float]) -> dict[str, Any]:
    """Embed the dataset with the baseline, index the vectors, measure recall and latency."""
    vectors, root, report = work / "vectors", work / "index", work / "index_eval"
    embed_cfg = embed.Config(
        input=str(dataset), model="pixels", output=str(vectors), overwrite=True
    )
    embedded = _stage("embed", lambda: embed.run(embed_cfg), timings)
    build_cfg = index_build.Config(input=str(vectors), output=str(root))
    built = _stage("index build", lambda: index_build.run(build_cfg), timings)
    eval_cfg = index_eval.Config(
        input=str(root),
        output=str(report),
        n_queries=min(200, embedded["count"]),
        target_recall=0.95,
    )
    measured = _stage("index eval", lambda: index_eval.run(eval_cfg), timings)
    tuned = measured["tuned_nprobe"]
    rows = [r for r in measured["rows"] if tuned is None or r["nprobe"] == tuned]
    best = max(rows, key=lambda r: (r["recall@10"], r["qps_single"]))
    return {
        "summary": {
            "factory": built["factory"],
            "shards": built["shards"],
            "ntotal": built["ntotal"],
            "nprobe": best["nprobe"],
            "rerank": best["rerank"],
            "recall@10": best["recall@10"],
            "latency_ms": 1000.0 / best["qps_single"],
            "embed_images_per_s": embedded["images_per_s"],
        },
        "outputs": {
            "vectors": str(vectors),
            "index": f"{root}/{built['version']}",
            "index_report": str(report / "eval.md"),
        },
    }


def summarize(s: dict[str, Any]) -> str:
    """The printed demo summary."""
    b, i = s["baseline"], s["index"]
    q = b["query"]
    rows = [
        "",
        "echoseek demo: phantom breath-hold retrieval",
        f"  frames            {s['frames']}",
        f"  positives         {s['positives']} ({s['positive_ratio']:.1%})",
        "",
        f"  {'model':<22}{'query AP':>9}{'LOO mAP':>9}{'P@10':>7}{'lift@10':>9}{'ms/query':>10}",
        f"  {'raw pixels (baseline)':<22}{q.get('ap', float('nan')):>9.3f}{b['loo_map']:>9.3f}"
        f"{q.get('p@10', float('nan')):>7.2f}{q.get('lift@10', float('nan')):>9.2f}"
        f"{b['latency_ms']:>10.2f}",
        "",
        f"  index {i['factory']} ({i['shards']} shard(s), {i['ntotal']} vectors): "
        f"recall@10 {i['recall@10']:.3f} vs brute force at nprobe {i['nprobe']}"
        f" (rerank {i['rerank'] or 'off'}), {i['latency_ms']:.2f} ms/query; "
        f"embedded at {i['embed_images_per_s']:.0f} img/s",
        "",
        "outputs:",
    ]
    rows += [f"  {name:<17} {path}" for name, path in s["outputs"].items()]
    total = sum(s["timings_s"].values())
    rows.append(
        f"total {total:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in s['timings_s'].items())})"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek demo") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
