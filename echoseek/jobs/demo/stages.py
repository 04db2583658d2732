"""The stages of ``echoseek demo``, each one job's ``run`` with laptop settings.

:func:`stage` runs and times one step with a start and an end line; :func:`cine` is
``echoseek phantom`` then ``echoseek ingest``; :func:`training_stages` pretrains and fine-tunes
on a second cine (another subject), the fine-tune as :func:`sweep_stage`: a Ray Tune sweep of
FastAP's distance (ASHA) whose best trial is the model; :func:`promote_stage` registers and
promotes it; :func:`index_stages` embeds, indexes and measures the index; :func:`service_stage`
starts the search endpoint on it, sends one image query over HTTP and stops it.
:mod:`echoseek.jobs.demo` strings them together and :mod:`echoseek.jobs.demo.summary` prints
the summary.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from echoseek.config import load_config, to_dict
from echoseek.data.augment import PHASE_RETRIEVAL
from echoseek.jobs import (
    embed,
    finetune,
    index_build,
    index_eval,
    ingest,
    model_promote,
    phantom,
    pretrain,
)
from echoseek.models.artifact import META_FILE, read_meta
from echoseek.service.client import search_image
from echoseek.service.config import ServiceConfig
from echoseek.service.run import check_port, start_service
from echoseek.sweep import SchedulerOptions, SweepConfig, run_sweep

TRAIN_LABELS = {"phase": "dataset_phase_labels.csv", "breath_hold": "dataset_labels.csv"}
DEMO_MODEL = "echoseek-demo"  # the demo's registered model; the endpoint serves @champion


def stage(name: str, fn: Callable[[], dict[str, Any]], timings: dict[str, float]) -> dict[str, Any]:
    print(f"[demo] {name} ...", flush=True)
    start = time.perf_counter()
    out = fn()
    timings[name] = time.perf_counter() - start
    print(f"[demo] {name} done in {timings[name]:.1f} s", flush=True)
    return out


def cine(
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


def training_stages(
    work: Path,
    timings: dict[str, float],
    *,
    frames: int,
    seed: int,
    size: int,
    train_labels: str,
    pretrain_epochs: int,
    finetune_epochs: int,
    sweep: bool = True,
) -> tuple[dict[str, Any], str]:
    """Pretrain and fine-tune on a second cine, choosing checkpoints (and the sweep's best
    trial) on a third: each cine is another subject, as the first cine, where the model is
    scored, is to both. Returns (outputs, the fine-tuned model dir)."""
    train_raw, train_data = work / "train_phantom", work / "train_dataset"
    val_raw, val_data = work / "val_phantom", work / "val_dataset"
    labels = TRAIN_LABELS[train_labels]
    stage("training cine", lambda: cine(train_raw, train_data, frames, seed + 1, labels), timings)
    stage("validation cine", lambda: cine(val_raw, val_data, frames, seed + 2, labels), timings)
    pre, fine = training_configs(
        work,
        train_data,
        size=size,
        train_labels=train_labels,
        pretrain_epochs=pretrain_epochs,
        finetune_epochs=finetune_epochs,
        val=val_data,
    )
    stage("pretrain (SimSiam)", lambda: pretrain.run(pre), timings)
    swept: dict[str, Any] = {}
    if sweep:  # the sweep's best trial (held-out val mAP) is the demo's model
        swept = sweep_stage(work, fine, timings)
        model = swept["best_model"]
        validation = read_meta(Path(model) / META_FILE).extra["validation"]
    else:
        model = fine.output
        validation = stage("finetune (FastAP)", lambda: finetune.run(fine), timings)["validation"]
    outputs = {
        "training_dataset": str(train_data),
        "pretrained_model": pre.output,
        "model": model,
        "checkpoints": fine.run.storage_path,
        "mlflow": fine.run.tracking_uri,
        "validation": validation,
        **({"sweep": swept["output"]} if swept else {}),
    }
    return {**outputs, "swept": swept}, model


def training_configs(
    work: Path,
    train_data: Path,
    *,
    size: int,
    train_labels: str,
    pretrain_epochs: int,
    finetune_epochs: int,
    val: Path | None = None,
) -> tuple[pretrain.Config, finetune.Config]:
    """The demo's pretrain and fine-tune configs (phase profile, 2 CPU workers, ``size`` px),
    writing under ``work``: ``model_ssl``, ``model``, ``ray_results``, ``mlflow``. The
    fine-tune chooses its checkpoint on ``val`` (all of ``train_data`` trains), or on a
    held-out 20 % of ``train_data`` without it."""
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
        f"augment.size={size}",
        *(f"augment.{k}={v}" for k, v in PHASE_RETRIEVAL.items()),
    ]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    pre = load_config(
        pretrain.Config,
        None,
        [
            *common,
            f"output={ssl}",
            f"epochs={pretrain_epochs}",
            "optim.warmup_epochs=0",
            "batch_size=32",
            f"run.name=demo-pretrain-{stamp}",
        ],
    )
    fine = load_config(
        finetune.Config,
        None,
        [
            *common,
            f"pretrained={ssl}",
            f"output={model}",
            f"epochs={finetune_epochs}",
            "batch_size=32",
            f"loss.m={8 if train_labels == 'phase' else 16}",  # 2 classes: 16 + 16
            "head.trainable=all",
            f"run.name=demo-finetune-{stamp}",
            *([f"val={val}"] if val else []),
        ],
    )
    return pre, fine


# two trials: each starts its own Ray Train workers (~35 s here), the demo's largest cost
DEMO_DISTANCES = [["cosine", {}], ["soart3_gamma", {"p": 2}]]


def sweep_config(work: Path, fine: finetune.Config) -> SweepConfig:
    """The demo's sweep: FastAP's distance (cosine against SOART3 gamma with p = 2) on
    the demo's fine-tune config (written to ``sweep_base.yaml``), one trial at a time with 2
    Ray Train workers, ASHA from the first epoch. The trial's driver (0.1 CPU) and workers
    (0.45 each) leave one whole CPU to its data tasks. A new name each run (a same name would
    resume)."""
    base = work / "sweep_base.yaml"
    data = to_dict(fine)
    data["run"]["name"] = ""
    base.write_text(yaml.safe_dump(data, sort_keys=False))
    return SweepConfig(
        name=f"demo-sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        job="finetune",
        base=str(base),
        output=str(work / "sweep"),
        fixed={"scale.cpus_per_worker": 0.45},  # torch: one thread each, as at 0.5
        space={"loss.distance,loss.distance_params": {"grid": DEMO_DISTANCES}},
        search="grid",
        num_samples=1,
        metric="val_map",
        scheduler=SchedulerOptions(kind="asha", grace_period=1, reduction_factor=2),
        trial_cpus=0.1,
        storage_path=fine.run.storage_path,
        tracking_uri=fine.run.tracking_uri,
        experiment=fine.run.experiment,
    )


def sweep_stage(work: Path, fine: finetune.Config, timings: dict[str, float]) -> dict[str, Any]:
    """``echoseek tune`` of :func:`sweep_config` (the previous demo's sweep output replaced);
    its summary. The sweep prints a line per trial result and its table of trials."""
    cfg = sweep_config(work, fine)
    shutil.rmtree(cfg.output, ignore_errors=True)
    return stage("sweep (Ray Tune: FastAP distance, ASHA)", lambda: run_sweep(cfg), timings)


def promote_stage(
    model: str, heldout: Path, tracking: str, timings: dict[str, float]
) -> dict[str, Any]:
    """Register ``model`` as the demo's ``@candidate`` and make it ``@champion`` when it beats
    the champion of an earlier demo run on ``heldout`` (or there is none)."""
    cfg = model_promote.Config(
        input=str(heldout), model=model, name=DEMO_MODEL, tracking_uri=tracking
    )
    return stage("register + promote", lambda: model_promote.run(cfg), timings)


def index_stages(
    work: Path, dataset: Path, model: str, timings: dict[str, float], tracking: str = ""
) -> dict[str, Any]:
    """Embed the dataset with ``model``, index the vectors, measure recall and latency."""
    vectors, root, report = work / "vectors", work / "index", work / "index_eval"
    embed_cfg = embed.Config(
        input=str(dataset), model=model, output=str(vectors), overwrite=True, tracking_uri=tracking
    )
    embedded = stage("embed", lambda: embed.run(embed_cfg), timings)
    build_cfg = index_build.Config(input=str(vectors), output=str(root))
    built = stage("index build", lambda: index_build.run(build_cfg), timings)
    eval_cfg = index_eval.Config(
        input=str(root),
        output=str(report),
        n_queries=min(200, embedded["count"]),
        target_recall=0.95,
    )
    measured = stage("index eval", lambda: index_eval.run(eval_cfg), timings)
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
            "model": embedded["model_uri"],
        },
        "outputs": {
            "vectors": str(vectors),
            "index": f"{root}/{built['version']}",
            "index_report": str(report / "eval.md"),
        },
    }


def service_stage(
    work: Path,
    dataset: Path,
    query: Path,
    timings: dict[str, float],
    port: int = 8000,
    tracking: str = "",
) -> dict[str, Any]:
    """Start the endpoint (Ray Serve) on the demo's index, query it with ``query`` over HTTP
    (``/v1/search/image``, top-5) and stop it; the answer and where the page was."""

    def run() -> dict[str, Any]:
        cfg = ServiceConfig(
            index=str(work / "index"),
            dataset=str(dataset),
            port=_port(port),
            tracking_uri=tracking,
            colocate=True,  # serve/local.yaml's layout: the ingress searches the shards
        )
        running = start_service(cfg)
        try:
            found = search_image(running.url, str(query), {"k": 5})
        finally:
            running.stop()
        return {"url": running.url, "answer": found}

    def _port(wanted: int) -> int:
        try:
            check_port("127.0.0.1", wanted)
            return wanted
        except Exception:  # taken (an `echoseek serve` already up): any free port
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return int(s.getsockname()[1])

    return stage("search endpoint", run, timings)
