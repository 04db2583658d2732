"""The summary ``echoseek demo`` prints: scores per model, the data protocol, the index, the
sweep, the registry's decision, the endpoint's answer, outputs and timings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echoseek.service.client import top_k_table
from echoseek.sweep.trial import expand


def scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary's scores of one ``echoseek evaluate`` result."""
    return {
        "loo_map": metrics["leave_one_out"]["map"],
        "query": metrics.get("query", {}),
        "latency_ms": metrics["latency"]["median_ms"],
    }


def sweep_lines(sweep: dict[str, Any]) -> list[str]:
    """The sweep's outcome: trials by state and the best distance (held-out val mAP)."""
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
