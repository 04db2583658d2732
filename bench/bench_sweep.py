"""Ray Tune sweeps on the phantom: ASHA against the full-budget grid, Tune's overhead, and the
team's questions about FastAP's distance, re-ranking, what trains and RankMe.

    .venv/bin/python bench/bench_sweep.py [--parts asha overhead findings] [--seeds 0 1 2]

Data (all phantom, respiratory-phase classes): the trials train on the cine of seed 1, ASHA
and checkpoint selection read the held-out mAP of the cine of seed 2 (another subject,
``val=``), and the findings are scored on the cine of seed 3 (never trained or selected on).
The encoder is the demo's SimSiam pretraining (1 epoch); every trial is the demo's fine-tune
(:func:`echoseek.jobs.demo.stages.training_configs`) with 2 Ray Train workers, one trial at a
time, as ``make demo``'s sweep (:func:`echoseek.jobs.demo.stages.sweep_config`) runs it.

- **asha**: one grid (3 FastAP distances x 2 learning rates) run twice, to the full budget (FIFO)
  and with ASHA (grace 1 epoch, reduction factor 3). Reported: each sweep's wall time, and the
  time until its best held-out mAP so far is within 0.01 of the full grid's best (from the
  trials' ``result.json`` timestamps). Goal: ASHA >= 3x faster.
- **overhead**: the same N fine-tunes (2 epochs) as N Tune trials (FIFO, one at a time: the
  CPUs hold one) and as N ``finetune.run`` calls one after another. Goal: Tune / loop <= 1.15.
- **findings**: per seed, each FastAP distance (cosine, sqeuclidean, SOART3 yita, gamma with
  p = 1, 2, 4, inf) with the whole backbone trained, and cosine with only the head or the head
  and the last stage trained; every exported model's test mAP by cosine and by its own
  distance; the cosine models re-ranked by every distance (test mAP); RankMe against held-out
  mAP over the trials (Spearman rho, from the sweep).

Results: Markdown tables on stdout and ``bench/results/sweep.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np

from echoseek.jobs.demo import finetune, pretrain
from echoseek.jobs.demo import stages as demo_stages
from echoseek.sweep import SchedulerOptions, run_sweep
from echoseek.sweep.trial import expand

ROOT = Path(__file__).resolve().parents[1]
DISTANCES = [
    ["cosine", {}],
    ["sqeuclidean", {}],
    ["soart3_yita", {}],
    ["soart3_gamma", {"p": 1}],
    ["soart3_gamma", {"p": 2}],
    ["soart3_gamma", {"p": 4}],
    ["soart3_gamma", {"p": math.inf}],
]
DIST_KEY = "loss.distance,loss.distance_params"


@dataclasses.dataclass
class Setup:
    work: Path
    fine: finetune.Config  # the demo's fine-tune on the training cine, val= the val cine
    test: Path


def setup(work: Path, epochs: int, val_frames: int) -> Setup:
    """Three phase-labelled cines (train, val, test) and the demo's SimSiam encoder."""
    data = {}
    for part, seed in (("train", 1), ("val", 2), ("test", 3)):
        labels = demo_stages.TRAIN_LABELS["phase"]
        frames = val_frames if part == "val" else 445
        demo_stages.cine(work / f"{part}_raw", work / part, frames, seed, labels)
        data[part] = work / part
    pre, fine = demo_stages.training_configs(
        work, data["train"], size=32, train_labels="phase", pretrain_epochs=1,
        finetune_epochs=epochs,
    )  # fmt: skip
    pretrain.run(pre)
    fine.val = str(data["val"])
    return Setup(work, fine, data["test"])


def sweep(s: Setup, name: str, space: dict[str, Any], **options: Any) -> dict[str, Any]:
    """One sweep of the demo's fine-tune; its summary, rows read back and start time."""
    (s.work / name).mkdir(exist_ok=True)
    demo = demo_stages.sweep_config(s.work / name, s.fine)
    cfg = dataclasses.replace(
        demo,
        name=f"bench-{name}-{time.strftime('%H%M%S')}",
        fixed={**demo.fixed, **options.pop("fixed", {})},
        space=space,
        **options,
    )
    start = time.time()
    summary = run_sweep(cfg)
    import pyarrow.parquet as pq

    root = Path(cfg.storage_path) / cfg.name  # local storage: an absolute path
    return {
        "summary": summary,
        "start": start,
        "rows": [drawn(r) for r in pq.read_table(Path(cfg.output) / "results.parquet").to_pylist()],
        "root": root,
        "models": Path(f"{root}-models"),
    }


def drawn(row: dict[str, Any]) -> dict[str, Any]:
    """A results.parquet row with ``params``: its ``param.*`` columns parsed back."""

    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return text

    params = {k[len("param.") :]: parse(v) for k, v in row.items() if k.startswith("param.")}
    return {**row, "params": params}


def reports(root: Path) -> list[tuple[float, float]]:
    """(timestamp, val_map) of every epoch every trial reported, oldest first."""
    out = []
    for path in root.glob("*/result.json"):
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("val_map") is not None:
                    out.append((float(r["timestamp"]), float(r["val_map"])))
    return sorted(out)


def time_to(root: Path, start: float, target: float) -> float:
    """Seconds from ``start`` until the best reported val_map reaches ``target``."""
    best = -math.inf
    for stamp, value in reports(root):
        best = max(best, value)
        if best >= target:
            return stamp - start
    return math.nan


def asha_vs_grid(s: Setup, epochs: int) -> dict[str, Any]:
    space = {
        DIST_KEY: {"grid": DISTANCES[:3]},
        "optim.lr": {"grid": [1e-4, 1e-3]},
    }
    fixed = {"epochs": epochs}
    grid = sweep(s, "grid", space, fixed=fixed, scheduler=SchedulerOptions(kind="fifo"))
    asha = sweep(
        s, "asha", space, fixed=fixed,
        scheduler=SchedulerOptions(kind="asha", grace_period=1, reduction_factor=3),
    )  # fmt: skip
    best = grid["summary"]["best_val_map"]
    out = {"grid_best": best, "epochs": epochs, "trials": len(grid["rows"])}
    for name, run in (("grid", grid), ("asha", asha)):
        out[name] = {
            "wall_s": run["summary"]["seconds"],
            "to_within_0.01_s": time_to(run["root"], run["start"], best - 0.01),
            "best": run["summary"]["best_val_map"],
            "epochs_run": int(sum(r["epochs"] for r in run["rows"])),
            "stopped": run["summary"]["stopped"],
        }
    return out


def overhead(s: Setup, n: int) -> dict[str, Any]:
    lrs = [1e-4, 3e-4, 1e-3, 3e-3][:n]
    tuned = sweep(
        s, "overhead", {"optim.lr": {"grid": lrs}}, fixed={"epochs": 2},
        scheduler=SchedulerOptions(kind="fifo"),
    )  # fmt: skip
    start = time.perf_counter()
    for i, lr in enumerate(lrs):
        cfg = dataclasses.replace(
            s.fine,
            epochs=2,
            output=str(s.work / "loop" / str(i)),
            optim=dataclasses.replace(s.fine.optim, lr=lr),
            scale=dataclasses.replace(s.fine.scale, cpus_per_worker=0.45),  # as the trials
            run=dataclasses.replace(s.fine.run, name=f"bench-loop-{i}-{time.strftime('%H%M%S')}"),
        )
        finetune.run(cfg)
    loop = time.perf_counter() - start
    return {"n": n, "tune_s": tuned["summary"]["seconds"], "loop_s": loop,
            "ratio": tuned["summary"]["seconds"] / loop}  # fmt: skip


def test_map(model: str, test: Path, distance: str = "", params: dict | None = None) -> float:
    """Leave-one-out mAP on the test cine, every labelled frame querying its phase class."""
    from echoseek.embedding import build_embedder
    from echoseek.evaluation.corpus import embed_dataset
    from echoseek.evaluation.retrieval import leave_one_out_metrics

    _, vectors, labels = embed_dataset(test, build_embedder(model), 256)
    loo = leave_one_out_metrics(vectors, labels, [10], None, distance, params or {})
    return float(loo["map"])


def label(values: dict[str, Any]) -> str:
    params = values.get("loss.distance_params") or {}
    return values.get("loss.distance", "cosine") + "".join(f" p={v}" for v in params.values())


def findings(s: Setup, seeds: list[int], epochs: int) -> dict[str, Any]:
    space = {"seed": {"grid": seeds}, DIST_KEY: {"grid": DISTANCES}}
    dist = sweep(s, "distances", space, fixed={"epochs": epochs},
                 scheduler=SchedulerOptions(kind="fifo"))  # fmt: skip
    space = {"seed": {"grid": seeds}, "head.trainable": {"grid": ["head", "last_stage"]}}
    train = sweep(s, "trainable", space, fixed={"epochs": epochs},
                  scheduler=SchedulerOptions(kind="fifo"))  # fmt: skip
    rows = []
    for run in (dist, train):
        for r in run["rows"]:
            values = expand(r["params"])
            model = str(run["models"] / r["trial_id"])
            if r["status"] != "finished" or not Path(model).is_dir():
                rows.append({"trial": r["trial_id"], "status": r["status"], **values})
                continue
            name = values.get("loss.distance", "cosine")
            params = values.get("loss.distance_params") or {}
            row = {
                "trial": r["trial_id"],
                "status": r["status"],
                "seed": values["seed"],
                "distance": label(values),
                "trainable": values.get("head.trainable", "all"),
                "val_map": r["best"],
                "test_map_cosine": test_map(model, s.test),
                "test_map_own": test_map(model, s.test, name, params),
            }
            if name == "cosine" and row["trainable"] == "all":  # re-rank the cosine model
                row["rerank"] = {
                    label({"loss.distance": d, "loss.distance_params": p}): test_map(
                        model, s.test, d, p
                    )
                    for d, p in DISTANCES
                }
            rows.append(row)
    return {
        "rows": rows,
        "rankme_spearman": {
            "distances": dist["summary"]["rankme_spearman"],
            "trainable": train["summary"]["rankme_spearman"],
        },
        "seconds": dist["summary"]["seconds"] + train["summary"]["seconds"],
    }


def print_findings(f: dict[str, Any]) -> None:
    rows = [r for r in f["rows"] if "val_map" in r]
    print("\n| FastAP distance | trained | seeds | held-out val mAP | test mAP (cosine) "
          "| test mAP (own distance) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|")
    keys = sorted({(r["distance"], r["trainable"]) for r in rows}, key=str)
    for dist, trainable in keys:
        mine = [r for r in rows if (r["distance"], r["trainable"]) == (dist, trainable)]
        cells = [
            f"{np.mean([r[k] for r in mine]):.3f} ± {np.std([r[k] for r in mine]):.3f}"
            for k in ("val_map", "test_map_cosine", "test_map_own")
        ]
        print(f"| {dist} | {trainable} | {len(mine)} | " + " | ".join(cells) + " |")
    reranked = [r["rerank"] for r in rows if "rerank" in r]
    if reranked:
        print("\n| re-rank distance (cosine-trained models) | test mAP, mean ± sd over seeds |")
        print("|---|---:|")
        for name in reranked[0]:
            vals = [r[name] for r in reranked]
            print(f"| {name} | {np.mean(vals):.3f} ± {np.std(vals):.3f} |")
    failed = [r for r in f["rows"] if "val_map" not in r]
    print(f"\nfailed or unfinished trials: {len(failed)}; RankMe vs held-out mAP Spearman rho: "
          f"{f['rankme_spearman']}; sweeps took {f['seconds']:.0f} s")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["asha", "overhead", "findings"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4, help="ASHA vs grid budget per trial")
    parser.add_argument("--findings-epochs", type=int, default=2)
    parser.add_argument("--val-frames", type=int, default=445, help="frames of the val cine")
    parser.add_argument("--overhead-n", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs", "parts": args.parts}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        s = setup(Path(tmp), args.findings_epochs, args.val_frames)
        print(f"[bench] setup (3 cines, SimSiam encoder) {time.perf_counter() - start:.0f} s")
        if "overhead" in args.parts:
            out["overhead"] = overhead(s, args.overhead_n)
            o = out["overhead"]
            print(f"\n[bench] overhead: {o['n']} fine-tunes by Tune {o['tune_s']:.1f} s, one after "
                  f"another {o['loop_s']:.1f} s: {o['ratio']:.2f}x")  # fmt: skip
        if "asha" in args.parts:
            out["asha"] = a = asha_vs_grid(s, args.epochs)
            print(
                f"\n| {a['trials']} trials x {a['epochs']} epochs | wall s | s to within 0.01 "
                f"of the grid's best ({a['grid_best']:.3f}) | best | epochs run | stopped |"
            )
            print("|---|---:|---:|---:|---:|---:|")
            for name in ("grid", "asha"):
                r = a[name]
                print(
                    f"| {name} | {r['wall_s']:.0f} | {r['to_within_0.01_s']:.0f} "
                    f"| {r['best']:.3f} | {r['epochs_run']} | {r['stopped']} |"
                )
            g, h = a["grid"], a["asha"]
            print(f"ASHA speed-up: wall {g['wall_s'] / h['wall_s']:.2f}x, to target "
                  f"{g['to_within_0.01_s'] / h['to_within_0.01_s']:.2f}x")  # fmt: skip
        if "findings" in args.parts:
            out["findings"] = findings(s, args.seeds, args.findings_epochs)
            print_findings(out["findings"])
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "sweep.json").write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
