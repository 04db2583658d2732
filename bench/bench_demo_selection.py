"""The demo's fine-tune: checkpoints chosen on held-out frames of the training cine, or on a
third cine (another subject), scored on the evaluation cine against raw pixels.

    .venv/bin/python bench/bench_demo_selection.py [--reps 3]

Three phantom cines of 445 frames: the evaluation cine (seed 0, breath-hold labels, as
``make demo``), the training cine (seed 1, phase classes) and a validation cine (seed 2, phase
classes). Per repetition the demo's encoder is pretrained once (SimSiam, 1 epoch,
:func:`echoseek.jobs.demo.stages.training_configs`), then fine-tuned twice with the demo's config
(FastAP, 3 epochs, whole backbone, 2 Ray Train CPU workers):

- ``held-out frames``: 80 % of the training cine trains, the best epoch on the other 20 % is
  exported (the demo before 2026-12-03);
- ``third cine``: all of the training cine trains, the best epoch on the validation cine is
  exported (``val=``; the demo since).

Both, and raw pixels, are scored on the evaluation cine, which nothing trained or chose on:
leave-one-out mAP over the positive frames and AP of the breath-hold reference image. Runs
are not seeded end to end (Ray schedules augmentation tasks in any order): the repetitions
show the spread.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np

from echoseek.jobs import evaluate, finetune, pretrain
from echoseek.jobs.demo.stages import TRAIN_LABELS, cine, training_configs


def scores(work: Path, model: str) -> tuple[float, float]:
    """(leave-one-out mAP, query AP) on the evaluation cine."""
    out = work / f"eval-{time.time_ns()}"
    cfg = evaluate.Config(
        input=str(work / "dataset"), query=str(work / "phantom" / "invivo.png"),
        output=str(out), model=model,
    )  # fmt: skip
    m = evaluate.run(cfg)
    return float(m["leave_one_out"]["map"]), float(m["query"]["ap"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[int, str, tuple[float, float], int, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-selection-") as tmp:
        work = Path(tmp)
        phase = TRAIN_LABELS["phase"]
        cine(work / "phantom", work / "dataset", 445, 0)
        cine(work / "train_phantom", work / "train_dataset", 445, 1, phase)
        cine(work / "val_phantom", work / "val_dataset", 445, 2, phase)
        raw = scores(work, "pixels")
        for rep in range(args.reps):
            pre, fine = training_configs(
                work / f"rep{rep}", work / "train_dataset", size=32, train_labels="phase",
                pretrain_epochs=1, finetune_epochs=3,
            )  # fmt: skip
            pretrain.run(pre)
            for variant, val in (("held-out frames", ""), ("third cine", work / "val_dataset")):
                slug = variant.split()[0]
                cfg = dataclasses.replace(
                    fine, val=str(val), output=f"{fine.output}-{slug}",
                    run=dataclasses.replace(fine.run, name=f"{fine.run.name}-{slug}"),
                )  # fmt: skip
                start = time.perf_counter()
                summary = finetune.run(cfg)
                seconds = time.perf_counter() - start
                rows.append(
                    (rep, variant, scores(work, cfg.output), summary["best_epoch"], seconds)
                )
                print(f"[bench] rep {rep} {variant}: {rows[-1]}", flush=True)
    print(f"\nraw pixels: LOO mAP {raw[0]:.3f}, query AP {raw[1]:.3f}")
    print("| rep | checkpoint chosen on | LOO mAP | query AP | best epoch | fine-tune s |")
    print("|---|---|---:|---:|---:|---:|")
    for rep, variant, (loo, ap), epoch, seconds in rows:
        print(f"| {rep} | {variant} | {loo:.3f} | {ap:.3f} | {epoch} | {seconds:.0f} |")
    for variant in ("held-out frames", "third cine"):
        mine = [r[2] for r in rows if r[1] == variant]
        wins = sum(loo > raw[0] and ap > raw[1] for loo, ap in mine)
        print(f"{variant}: mean LOO mAP {np.mean([m[0] for m in mine]):.3f}, query AP "
              f"{np.mean([m[1] for m in mine]):.3f}; beats raw pixels on both in "
              f"{wins}/{len(mine)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
