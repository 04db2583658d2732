"""Anomaly detection with kNN scores on SSL embeddings, under training-set contamination: the
protocol of Otero, Mateus and Balestriero (2024, arXiv 2410.04289) on this project's data.

    .venv/bin/python bench/bench_anomaly.py [--sets phantom digits] \\
        [--methods simsiam byol barlow simclr instdisc] [--contamination 0 1 5 10 20] \\
        [--seeds 0 1] [--epochs 3]
    .venv/bin/python bench/bench_anomaly.py --quick   # phantom, SimSiam+SimCLR, 0/10/20 %, 1 seed

For each set and seed, one class (or the phantom's normal frames) is normal and everything else
is an anomaly:

- ``phantom``: a cine with more transient artefacts and hard negatives than the demo's (both are
  the anomalies, ``dataset_anomaly_labels.csv``) of the subject of seed ``2s + 1``: training
  frames from its first 60 %, the scored frames its last 40 % (held out in time);
  ``phantom-other``: training frames from that whole cine, scored frames the cine of seed
  ``2s`` (another subject);
- ``digits``: scikit-learn's digits (:mod:`real_sets`), class 0 normal, split by item;
- ``fashion``: Fashion-MNIST (``make real-sets``, 200 per class), class 0 (T-shirt/top)
  normal, split by item.

The SSL encoder (``echoseek pretrain ray_jobs/pretrain.local.yaml method=M``) trains on the
unlabelled training set: the normal training items plus anomalies making up ``c`` % of it. The
held-out set is scored with ``echoseek anomaly`` against that same contaminated training set as
the reference (k = 5, cosine; nothing scored was trained on) and its AUROC reported, next to raw
pixels and a randomly initialised encoder of the same architecture. RankMe is the encoder's
last-epoch value on its own training data; the Spearman correlation between RankMe and AUROC
runs over every SSL run of a set. Results: a Markdown table on stdout and
``bench/results/anomaly-<sets>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import real_sets
from bench_quality_real import random_encoder
from scipy.stats import spearmanr

from echoseek.config import load_config
from echoseek.data.dataset import DatasetWriter, Row
from echoseek.jobs import anomaly, pretrain
from echoseek.phantom import PhantomParams, generate_phantom

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("simsiam", "byol", "barlow", "simclr", "instdisc")
PHANTOM = {"frames": 300, "artifact_rate": 0.15, "hard_negative_rate": 0.1}
K = 5


def write_dataset(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """A dataset directory of ``images`` with labels 0 (normal) / 1 (anomaly)."""
    with DatasetWriter(path, {"kind": "bench_anomaly"}) as writer:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            writer.add(Row(f"{path.name}-{i:05d}", image, "bench", label=int(label)))
    return path


def contaminated(labels: np.ndarray, percent: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of every normal item plus anomalies making up ``percent`` % of the result."""
    normal, odd = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    want = round(percent / (100 - percent) * len(normal))
    if want > len(odd):
        raise SystemExit(f"{percent} % needs {want} anomalies, the training pool has {len(odd)}")
    return np.sort(np.concatenate([normal, rng.choice(odd, want, replace=False)]))


def phantom_cine(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames and labels (1: a transient artefact or a hard negative) of one subject's cine."""
    p = generate_phantom(PhantomParams(seed=seed, **PHANTOM))  # type: ignore[arg-type]
    return p.frames, (p.artifact | p.hard_negative).astype(np.int64)


def phantom_set(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(train pool, test): the first 60 % of one subject's cine, and its last 40 % (held out
    in time; the normal reference is the same subject, as an inspection line's is)."""
    frames, labels = phantom_cine(2 * seed + 1)
    cut = round(0.6 * len(labels))
    return (frames[:cut], labels[:cut]), (frames[cut:], labels[cut:])


def phantom_other_subject(
    seed: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(train pool, test): one subject's whole cine, and another subject's."""
    return phantom_cine(2 * seed + 1), phantom_cine(2 * seed)


def one_class_set(
    data: real_sets.ImageSet, seed: int, normal: int = 0, test_anomalies: int = 120
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(train pool, test): class ``normal`` normal, every other class an anomaly; a split
    stratified by item (60 % of each side to training), ``test_anomalies`` scored."""
    y = (data.labels != normal).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = [], []
    for cls in (0, 1):
        members = order[y[order] == cls]
        cut = round(0.6 * len(members))
        train += list(members[:cut])
        test += list(members[cut : cut + (len(members) - cut if cls == 0 else test_anomalies)])
    train_i, test_i = np.sort(train), np.sort(test)
    return (data.images[train_i], y[train_i]), (data.images[test_i], y[test_i])


def digits_set(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits, class 0 normal."""
    return one_class_set(real_sets.digits(), seed)


def fashion_set(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST (200 per class), class 0 (T-shirt/top) normal: shirts and pullovers
    are near misses."""
    return one_class_set(real_sets.fashion(), seed)


SETS = {
    "phantom": phantom_set,
    "phantom-other": phantom_other_subject,
    "digits": digits_set,
    "fashion": fashion_set,
}


def score(model: str, train: Path, test: Path, out: Path) -> float:
    cfg = anomaly.Config(
        input=str(test), reference=str(train), model=model, output=str(out), k=K,
        normal_labels=[0], log=False, overwrite=True,
    )  # fmt: skip
    return float(anomaly.run(cfg)["auroc"])


def run_pretrain(train: Path, method: str, epochs: int, work: Path) -> tuple[Path, float, float]:
    out = work / f"ssl-{method}"
    overrides = [
        f"input={train}", f"output={out}", f"method={method}", f"epochs={epochs}",
        f"run.storage_path={work / 'ray'}", f"run.name={work.name}-{method}",
        f"run.tracking_uri=sqlite:///{work / 'mlflow.db'}", "run.experiment=bench-anomaly",
        "optim.warmup_epochs=0", "overwrite=true",
    ]  # fmt: skip
    cfg = load_config(pretrain.Config, ROOT / "ray_jobs" / "pretrain.local.yaml", overrides)
    start = time.perf_counter()
    summary = pretrain.run(cfg)
    return out, float(summary.get("rankme") or float("nan")), time.perf_counter() - start


def bench_set(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        (pool_x, pool_y), (test_x, test_y) = SETS[name](seed)
        test = write_dataset(work / f"{name}-{seed}-test", test_x, test_y)
        for c in args.contamination:
            rng = np.random.default_rng(1000 * seed + int(10 * c))
            keep = contaminated(pool_y, c, rng)
            cell = work / f"{name}-{seed}-c{c:g}"
            train = write_dataset(cell / "train", pool_x[keep], pool_y[keep])
            base = {"set": name, "seed": seed, "contamination": c, "train": len(keep),
                    "test": len(test_y), "test_anomalies": int(test_y.sum())}  # fmt: skip
            runs.append(
                {
                    **base,
                    "method": "raw pixels",
                    "auroc": score("pixels", train, test, cell / "a-px"),
                }
            )
            encoder = None
            for method in args.methods:
                encoder, rank, seconds = run_pretrain(train, method, args.epochs, cell)
                auroc = score(str(encoder), train, test, cell / f"a-{method}")
                runs.append(
                    {**base, "method": method, "auroc": auroc, "rankme": rank, "seconds": seconds}
                )
                print(f"{name} seed {seed} c={c:g}% {method}: AUROC {auroc:.3f} RankMe {rank:.1f}",
                      flush=True)  # fmt: skip
            if encoder is not None:
                rand = random_encoder(encoder, cell / "random")
                runs.append(
                    {
                        **base,
                        "method": "random init",
                        "auroc": score(str(rand), train, test, cell / "a-rand"),
                    }
                )
    ssl = [r for r in runs if r["method"] in METHODS and np.isfinite(r.get("rankme", np.nan))]
    rho = (
        spearmanr([r["rankme"] for r in ssl], [r["auroc"] for r in ssl]).statistic
        if len(ssl) > 2
        else float("nan")
    )
    return {"runs": runs, "rankme_auroc_spearman": float(rho)}


def table(result: dict[str, Any], levels: list[float]) -> str:
    runs = result["runs"]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    lines = ["| method | " + " | ".join(f"{c:g} %" for c in levels) + " |",
             "|---|" + "---:|" * len(levels)]  # fmt: skip
    for m in methods:
        cells = []
        for c in levels:
            vals = [r["auroc"] for r in runs if r["method"] == m and r["contamination"] == c]
            sd = f" ± {np.std(vals):.3f}" if len(vals) > 1 else ""
            cells.append(f"{np.mean(vals):.3f}{sd}" if vals else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nSpearman rho(RankMe, AUROC) over the SSL runs: {result['rankme_auroc_spearman']:.2f}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["phantom", "digits"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--contamination", nargs="+", type=float, default=[0, 1, 5, 10, 20])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="phantom, simsiam+simclr, 0/10/20 %%, seed 0"
    )
    args = parser.parse_args()
    if args.quick:
        args.sets, args.methods, args.contamination, args.seeds = (
            ["phantom"],
            ["simsiam", "simclr"],
            [0, 10, 20],
            [0],
        )
    results: dict[str, Any] = {"command": " ".join(sys.argv), "k": K, "phantom": PHANTOM}
    with tempfile.TemporaryDirectory(prefix="bench-anomaly-") as tmp:
        for name in args.sets:
            started = time.perf_counter()
            results[name] = bench_set(name, args, Path(tmp))
            results[name]["seconds"] = time.perf_counter() - started
            print(f"\n## {name} (test AUROC, anomalies positive; {len(args.seeds)} seed(s))\n")
            print(table(results[name], args.contamination))
    out = (
        ROOT
        / "bench"
        / "results"
        / f"anomaly-{'-'.join(args.sets)}{'-quick' if args.quick else ''}.json"
    )
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
