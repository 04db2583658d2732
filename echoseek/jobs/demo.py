"""The end-to-end demo on phantom ultrasound data: the first thing a new user runs.

    make demo                       # = echoseek demo work_dir=work/demo
    echoseek demo frames=200 seed=3

Stages: phantom cine -> ingest -> raw-pixel baseline evaluation -> (with ``train=true``, the
default) a second phantom cine (another seed: a different "subject"), ingested with its
respiratory-phase classes (``dataset_phase_labels.csv``: the breath-hold labels of one cine
do not transfer to another) -> SimSiam pretraining and FastAP fine-tuning on it with 2 Ray
Train CPU workers -> evaluation of the trained model on the first cine, next to the baseline
-> embed (Ray Data) -> index build (Ray tasks) ->
index eval (recall against brute force, query latency), then a short summary of what was
measured and where every output went. Each stage is the same job a user runs by hand
(``echoseek phantom``, ``ingest``, ``evaluate``, ``pretrain``, ``finetune``, ``embed``,
``index build``, ``index eval``). The demo corpus is small, so the index rules choose an exact
Flat index.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoseek.config import load_config
from echoseek.data.augment import PHASE_RETRIEVAL
from echoseek.errors import ConfigError
from echoseek.jobs import (
    embed,
    evaluate,
    finetune,
    index_build,
    index_eval,
    ingest,
    phantom,
    pretrain,
)
from echoseek.jobs.runner import run_job

TRAIN_LABELS = {"phase": "dataset_phase_labels.csv", "breath_hold": "dataset_labels.csv"}


@dataclass
class Config:
    """Options of ``echoseek demo``."""

    input: str | None = None  # unused: the demo makes its own data
    output: str | None = None  # defaults to work_dir
    work_dir: str = "work/demo"
    frames: int = 445
    seed: int = 0
    train: bool = True  # pretrain + fine-tune on a second phantom cine (a few minutes on CPU)
    size: int = 32  # model input size for the demo's training (pixels)
    pretrain_epochs: int = 1  # the fine-tune trains the whole backbone: see BENCHMARKS.md
    finetune_epochs: int = 3
    train_labels: str = "phase"  # phase: respiratory-phase classes; breath_hold: 0/1 labels

    def __post_init__(self) -> None:
        if self.frames < 20:
            raise ConfigError(
                f"frames must be at least 20 for a meaningful demo, got {self.frames}"
            )
        if self.train_labels not in TRAIN_LABELS:
            raise ConfigError(f"train_labels: must be one of {list(TRAIN_LABELS)}")


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
    desc = _stage("phantom + ingest", lambda: _cine(raw, dataset, cfg.frames, cfg.seed), timings)
    eval_cfg = evaluate.Config(
        input=str(dataset), query=str(raw / "invivo.png"), output=str(evaluation)
    )
    baseline = _stage("baseline evaluate", lambda: evaluate.run(eval_cfg), timings)
    models = {"raw pixels (baseline)": _scores(baseline)}
    outputs = {
        "phantom": str(raw),
        "dataset": str(dataset),
        "baseline_metrics": str(evaluation / "metrics.json"),
    }
    model = "pixels"
    if cfg.train:
        trained, model = _training_stages(work, cfg, timings)
        trained_eval = evaluate.Config(
            input=str(dataset),
            query=str(raw / "invivo.png"),
            output=str(work / "eval_trained"),
            model=model,
        )
        scores = _stage("trained evaluate", lambda: evaluate.run(trained_eval), timings)
        models[f"SimSiam+FastAP {cfg.pretrain_epochs}+{cfg.finetune_epochs} ep"] = _scores(scores)
        outputs.update(trained)
        outputs["trained_metrics"] = str(work / "eval_trained" / "metrics.json")
    index = _index_stages(work, dataset, model, timings)
    return {
        "work_dir": str(work),
        "frames": desc["count"],
        "positives": baseline["positives"],
        "positive_ratio": baseline["positive_ratio"],
        "models": models,
        "baseline": models["raw pixels (baseline)"],
        "index": index["summary"],
        "outputs": {**outputs, **index["outputs"]},
        "timings_s": timings,
    }


def _cine(
    raw: Path, dataset: Path, frames: int, seed: int, labels: str = "dataset_labels.csv"
) -> dict[str, Any]:
    """``echoseek phantom`` then ``echoseek ingest`` of its files; returns the descriptor."""
    overrides = [f"output={raw}", f"frames={frames}", f"seed={seed}", "overwrite=true"]
    phantom.run(load_config(phantom.Config, None, overrides))
    return ingest.run(
        ingest.Config(
            input=str(raw / "dataset.mat"),
            labels=str(raw / labels),
            output=str(dataset),
            frame_axis=2,  # the phantom writes MATLAB's H x W x N
            overwrite=True,
        )
    )


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "loo_map": metrics["leave_one_out"]["map"],
        "query": metrics.get("query", {}),
        "latency_ms": metrics["latency"]["median_ms"],
    }


def _training_stages(
    work: Path, cfg: Config, timings: dict[str, float]
) -> tuple[dict[str, str], str]:
    """Pretrain and fine-tune on a second cine; returns (outputs, the fine-tuned model dir)."""
    train_raw, train_data = work / "train_phantom", work / "train_dataset"
    _stage(
        "training cine",
        lambda: _cine(
            train_raw, train_data, cfg.frames, cfg.seed + 1, TRAIN_LABELS[cfg.train_labels]
        ),
        timings,
    )
    ssl, model, runs = work / "model_ssl", work / "model", work / "ray_results"
    tracking = f"sqlite:///{(work / 'mlflow' / 'mlflow.db').resolve()}"
    common = [
        f"input={train_data}",
        "scale.num_workers=2",
        "scale.use_gpu=false",
        f"run.storage_path={runs}",
        f"run.tracking_uri={tracking}",
        "run.experiment=echoseek-demo",
        "overwrite=true",
        f"augment.size={cfg.size}",
        *(f"augment.{k}={v}" for k, v in PHASE_RETRIEVAL.items()),
    ]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    pre = load_config(
        pretrain.Config,
        None,
        [
            *common,
            f"output={ssl}",
            f"epochs={cfg.pretrain_epochs}",
            "optim.warmup_epochs=0",
            "batch_size=32",
            f"run.name=demo-pretrain-{stamp}",
        ],
    )
    _stage("pretrain (SimSiam)", lambda: pretrain.run(pre), timings)
    fine = load_config(
        finetune.Config,
        None,
        [
            *common,
            f"pretrained={ssl}",
            f"output={model}",
            f"epochs={cfg.finetune_epochs}",
            "batch_size=32",
            f"loss.m={8 if cfg.train_labels == 'phase' else 16}",  # 2 classes: 16 + 16
            "head.trainable=all",
            f"run.name=demo-finetune-{stamp}",
        ],
    )
    _stage("finetune (FastAP)", lambda: finetune.run(fine), timings)
    outputs = {
        "training_dataset": str(train_data),
        "pretrained_model": str(ssl),
        "model": str(model),
        "checkpoints": str(runs),
        "mlflow": tracking,
    }
    return outputs, str(model)


def _index_stages(
    work: Path, dataset: Path, model: str, timings: dict[str, float]
) -> dict[str, Any]:
    """Embed the dataset with ``model``, index the vectors, measure recall and latency."""
    vectors, root, report = work / "vectors", work / "index", work / "index_eval"
    embed_cfg = embed.Config(input=str(dataset), model=model, output=str(vectors), overwrite=True)
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
    i = s["index"]
    nan = float("nan")
    rows = [
        "",
        "echoseek demo: phantom breath-hold retrieval",
        f"  frames            {s['frames']}",
        f"  positives         {s['positives']} ({s['positive_ratio']:.1%})",
        "",
        f"  {'model':<26}{'query AP':>9}{'LOO mAP':>9}{'P@10':>7}{'lift@10':>9}{'ms/query':>10}",
    ]
    for name, m in s["models"].items():
        q = m["query"]
        rows.append(
            f"  {name:<26}{q.get('ap', nan):>9.3f}{m['loo_map']:>9.3f}"
            f"{q.get('p@10', nan):>7.2f}{q.get('lift@10', nan):>9.2f}{m['latency_ms']:>10.2f}"
        )
    rows += [
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
