"""Training quality on the phantom: SimSiam + FastAP vs the raw-pixel baseline, per seed.

    .venv/bin/python bench/bench_quality.py [--seeds 0 1 2] [--labels phase breath_hold]

Runs exactly what ``make demo`` runs (``echoseek.jobs.demo``) for each seed and each kind of
training labels: the evaluation cine is the phantom of ``seed``, the model is pretrained
(SimSiam, 1 epoch) and fine-tuned (FastAP, 3 epochs, whole backbone) on the phantom of
``seed + 1`` (another subject) with 2 Ray Train CPU workers, then both the trained model and
raw pixels are scored on the evaluation cine: query AP of the breath-hold reference image and
leave-one-out mAP over the positive frames. ``phase`` trains on respiratory-phase classes,
``breath_hold`` on the training cine's own 0/1 breath-hold labels (the ablation).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np

from echoseek.jobs import demo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", nargs="+", default=["phase", "breath_hold"])
    args = parser.parse_args()
    rows: list[tuple[str, int, dict[str, float], dict[str, float], float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for labels in args.labels:
            for seed in args.seeds:
                start = time.perf_counter()
                cfg = demo.Config(work_dir=f"{tmp}/{labels}-{seed}", seed=seed, train_labels=labels)
                out = demo.run(cfg)
                base, trained = (out["models"][name] for name in out["models"])
                rows.append((labels, seed, base, trained, time.perf_counter() - start))
                print(f"[bench] {labels} seed {seed} done", flush=True)
    print("\n| training labels | seed | baseline query AP | trained query AP "
          "| baseline LOO mAP | trained LOO mAP | run s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for labels, seed, base, trained, seconds in rows:
        print(
            f"| {labels} | {seed} | {base['query']['ap']:.3f} | {trained['query']['ap']:.3f} "
            f"| {base['loo_map']:.3f} | {trained['loo_map']:.3f} | {seconds:.0f} |"
        )
    for labels in args.labels:
        mine = [r for r in rows if r[0] == labels]
        gain_q = np.mean([t["query"]["ap"] - b["query"]["ap"] for _, _, b, t, _ in mine])
        gain_m = np.mean([t["loo_map"] - b["loo_map"] for _, _, b, t, _ in mine])
        wins = sum(t["loo_map"] > b["loo_map"] for _, _, b, t, _ in mine)
        print(
            f"\n{labels}: mean gain over raw pixels query AP {gain_q:+.3f}, "
            f"LOO mAP {gain_m:+.3f}; trained wins LOO mAP on {wins}/{len(mine)} seeds"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
