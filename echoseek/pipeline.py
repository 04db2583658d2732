"""The stages of the end-to-end demo pipeline, each one job's ``run`` with laptop settings.

:func:`stage` runs and times one step with a start and an end line; :func:`cine` is
``echoseek phantom`` then ``echoseek ingest``; :func:`training_stages` pretrains and fine-tunes
on a second cine (another subject), the fine-tune as :func:`sweep_stage`: a Ray Tune sweep of
FastAP's distance (ASHA) whose best trial is the model; :func:`index_stages` embeds, indexes
and measures the index; :func:`service_stage` starts the search endpoint on it, sends one
image query over HTTP and stops it. :mod:`echoseek.jobs.demo` strings them together and
prints the summary.
"""

from __future__ import annotations

import shutil
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


def scores(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "loo_map": metrics["leave_one_out"]["map"],
        "query": metrics.get("query", {}),
        "latency_ms": metrics["latency"]["median_ms"],
    }


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


def sweep_config(work: Path, fine: finetune.Config) -> Any:
    """The demo's sweep: FastAP's distance (cosine against SOART3 gamma with p = 2) on
    the demo's fine-tune config (written to ``sweep_base.yaml``), one trial at a time with 2
    Ray Train workers, ASHA from the first epoch. The trial's driver (0.1 CPU) and workers
    (0.45 each) leave one whole CPU to its data tasks. A new name each run (a same name would
    resume)."""
    from echoseek.sweep import SchedulerOptions, SweepConfig

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
    from echoseek.sweep import run_sweep

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
    from echoseek.service.client import search_image
    from echoseek.service.config import ServiceConfig
    from echoseek.service.run import check_port, start_service

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
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return int(s.getsockname()[1])

    return stage("search endpoint", run, timings)


def sweep_lines(sweep: dict[str, Any]) -> list[str]:
    """The sweep's outcome: trials by state and the best distance (held-out val mAP)."""
    from echoseek.sweep.trial import expand

    drawn = expand(sweep["best_params"])
    params = drawn.get("loss.distance_params") or {}
    best = f"{drawn.get('loss.distance', '-')}{''.join(f' {k}={v}' for k, v in params.items())}"
    return [
        "",
        f"  sweep (Ray Tune) of FastAP's distance: {sweep['trials']} trials, "
        f"{sweep['stopped']} stopped early by ASHA, {sweep['failed']} failed; the best, "
        f"{best} (held-out val mAP {sweep['best_val_map']:.3f}), is the model above",
        f"  (`echoseek finetune {sweep['output']}/best.yaml` trains it again)",
    ]


def registry_lines(promoted: dict[str, Any], work: Path) -> list[str]:
    """The registry's decision and the one command that reports on the champion."""
    sc, name = promoted["scores"], promoted["name"]
    versus = f" vs champion {sc['champion']:.3f}" if "champion" in sc else " (no champion yet)"
    verdict = "promoted" if promoted["promoted"] else "kept the champion"
    return [
        "",
        f"  registry: models:/{name}/{promoted['candidate']} is @candidate; {verdict}: "
        f"LOO mAP {sc['candidate']:.3f}{versus} on the scored cine; "
        f"@champion = version {promoted['champion']}, which the index and endpoint use",
        f"  report: `make report` writes {work}/report/report.pdf of models:/{name}@champion",
    ]


def service_lines(service: dict[str, Any]) -> list[str]:
    """The endpoint's top-5 table and how to keep it up."""
    from echoseek.service.client import top_k_table

    url = service["url"]
    lines = ["", f"  search endpoint (Ray Serve) at {url}: the query image over HTTP, top-5"]
    lines += [f"    {line}" for line in top_k_table(service["answer"]).splitlines()]
    lines.append(f"  web page {url}/ (stopped now; `echoseek serve serve/local.yaml` keeps it up)")
    return lines


def data_protocol(
    seed: int, labels: str, validation: dict[str, Any], scored_rows: int
) -> dict[str, str]:
    """What the trained model was trained on, selected on and scored on (disjoint data)."""
    third = validation.get("kind") == "dataset"  # a third cine, as long as the others
    trained = scored_rows if third else validation.get("train_rows", "?")
    selected = (
        f"phantom cine seed {seed + 2} ({labels} classes), {scored_rows} frames: a third subject"
        if third
        else f"{validation.get('val_rows', '?')} other frames of that cine, held out"
    )
    return {
        "trained on": f"phantom cine seed {seed + 1} ({labels} classes), {trained} frames",
        "selected on": selected,
        "scored on": f"phantom cine seed {seed}, {scored_rows} frames: another subject, "
        "never trained or selected on",
    }


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The demo summary: scores per model, the data protocol, the index, outputs, timings."""
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
    rows += [f"  {k:<12} {v}" for k, v in s.get("protocol", {}).items()]
    rows += [
        "",
        f"  index {i['factory']} ({i['shards']} shard(s), {i['ntotal']} vectors): "
        f"recall@10 {i['recall@10']:.3f} vs brute force at nprobe {i['nprobe']}"
        f" (rerank {i['rerank'] or 'off'}), {i['latency_ms']:.2f} ms/query; "
        f"embedded at {i['embed_images_per_s']:.0f} img/s",
    ]
    if s.get("sweep"):
        rows += sweep_lines(s["sweep"])
    if s.get("registry"):
        rows += registry_lines(s["registry"], Path(s["work_dir"]))
    if s.get("service"):
        rows += service_lines(s["service"])
    rows += [
        "",
        "outputs:",
    ]
    rows += [f"  {name:<17} {path}" for name, path in s["outputs"].items()]
    total = sum(s["timings_s"].values())
    rows.append(
        f"total {total:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in s['timings_s'].items())})"
    )
    return rows
