"""The end-to-end demo on phantom ultrasound data: the first thing a new user runs.

    make demo                       # = echoseek demo work_dir=work/demo
    echoseek demo frames=200 seed=3

Stages (:mod:`echoseek.jobs.demo.stages`, each the job a user runs by hand): phantom cine -> ingest
-> raw-pixel baseline evaluation -> (``train=true``) a second cine of another "subject" with
its respiratory-phase classes -> SimSiam pretraining on it -> FastAP fine-tuning (2 Ray Train
CPU workers; checkpoint chosen on a held-out part of the cine), by default as a Ray Tune sweep
of FastAP's distance with ASHA whose best trial is the model (``sweep=false``: one fine-tune)
-> evaluation on the first cine, next to the baseline -> the model registered in MLflow and
promoted to ``@champion`` when it beats the champion of an earlier run (scored on the first
cine) -> embed with ``models:/echoseek-demo@champion`` -> index build -> index eval -> the
search endpoint (Ray Serve) answering one image query over HTTP; then the summary: what was
measured, on which data, where every output went (``make report``: the champion's PDF).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoseek.errors import ConfigError
from echoseek.jobs import evaluate
from echoseek.jobs.demo.stages import (
    DEMO_MODEL,
    TRAIN_LABELS,
    cine,
    index_stages,
    promote_stage,
    service_stage,
    stage,
    training_stages,
)
from echoseek.jobs.demo.summary import data_protocol, scores, summary_lines
from echoseek.jobs.runner import run_job
from echoseek.service.ingress import prepare_ingress
from echoseek.service.run import ray_running


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
    sweep: bool = True  # with train: fine-tune as a sweep of FastAP distances (2 trials, ASHA)
    train_labels: str = "phase"  # phase: respiratory-phase classes; breath_hold: 0/1 labels
    serve: bool = True  # end by querying the search endpoint over HTTP
    port: int = 8000  # the endpoint's port (another free one when taken)

    def __post_init__(self) -> None:
        if self.frames < 20:
            raise ConfigError(
                f"frames must be at least 20 for a meaningful demo, got {self.frames}"
            )
        if self.train_labels not in TRAIN_LABELS:
            raise ConfigError(f"train_labels: must be one of {list(TRAIN_LABELS)}")


def run(cfg: Config) -> dict[str, Any]:
    """Run every stage into ``work_dir`` (outputs are replaced on each run)."""
    prepare_ingress("fast", joining=ray_running())  # before the first stage starts Ray
    work = Path(cfg.output or cfg.work_dir)
    raw, dataset, evaluation = work / "phantom", work / "dataset", work / "eval"
    timings: dict[str, float] = {}
    desc = stage("phantom + ingest", lambda: cine(raw, dataset, cfg.frames, cfg.seed), timings)
    eval_cfg = evaluate.Config(
        input=str(dataset), query=str(raw / "invivo.png"), output=str(evaluation)
    )
    baseline = stage("baseline evaluate", lambda: evaluate.run(eval_cfg), timings)
    models = {"raw pixels (baseline)": scores(baseline)}
    outputs = {
        "phantom": str(raw),
        "dataset": str(dataset),
        "baseline_metrics": str(evaluation / "metrics.json"),
    }
    model, protocol, swept, promoted, tracking = "pixels", {}, {}, {}, ""
    if cfg.train:
        trained, model = training_stages(
            work,
            timings,
            frames=cfg.frames,
            seed=cfg.seed,
            size=cfg.size,
            train_labels=cfg.train_labels,
            pretrain_epochs=cfg.pretrain_epochs,
            finetune_epochs=cfg.finetune_epochs,
            sweep=cfg.sweep,
        )
        swept = trained.pop("swept")
        protocol = data_protocol(
            cfg.seed, cfg.train_labels, trained.pop("validation"), desc["count"]
        )
        trained_eval = evaluate.Config(
            input=str(dataset),
            query=str(raw / "invivo.png"),
            output=str(work / "eval_trained"),
            model=model,
        )
        found = stage("trained evaluate", lambda: evaluate.run(trained_eval), timings)
        models[f"SimSiam+FastAP {cfg.pretrain_epochs}+{cfg.finetune_epochs} ep"] = scores(found)
        outputs.update(trained)
        outputs["trained_metrics"] = str(work / "eval_trained" / "metrics.json")
        tracking = outputs["mlflow"]
        promoted = promote_stage(model, dataset, tracking, timings)
        model = f"models:/{DEMO_MODEL}@champion"  # pinned to its version by embed
    index = index_stages(work, dataset, model, timings, tracking)
    query = raw / "invivo.png"
    service = service_stage(work, dataset, query, timings, cfg.port, tracking) if cfg.serve else {}
    return {
        "work_dir": str(work),
        "frames": desc["count"],
        "positives": baseline["positives"],
        "positive_ratio": baseline["positive_ratio"],
        "models": models,
        "protocol": protocol,
        "baseline": models["raw pixels (baseline)"],
        "index": index["summary"],
        "sweep": swept,
        "registry": promoted,
        "service": service,
        "outputs": {**outputs, **index["outputs"]},
        "timings_s": timings,
    }


def summarize(s: dict[str, Any]) -> str:
    """The printed demo summary."""
    return "\n".join(summary_lines(s))


def main(argv: Sequence[str] | None = None, prog: str = "echoseek demo") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)
