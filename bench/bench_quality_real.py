"""Retrieval quality on real labelled images (not the phantom), with the shipped laptop profiles.

    make real-sets && .venv/bin/python bench/bench_quality_real.py \\
        [--sets digits fashion] [--methods simsiam byol barlow simclr instdisc] \\
        [--fractions 0.1 0.3]

For each set of :mod:`real_sets` (scikit-learn's digits: 900 / 300 / 597 items; Fashion-MNIST,
200 per class: 1,000 / 300 / 700), split by item into train / val / test from seed 0 and
ingested with ``echoseek ingest labels_from_folders=true``, it scores on **test** (never trained
on, never used to choose a checkpoint) the leave-one-out mAP and P@10 of every labelled test
item querying the others:

- raw pixels (``echoseek evaluate model=pixels``);
- each SSL method's encoder alone: ``echoseek pretrain ray_jobs/pretrain.local.yaml
  input=train val=val method=M``;
- SSL + FastAP: ``echoseek finetune ray_jobs/finetune.local.yaml input=train val=val
  pretrained=<the SimSiam encoder>``;
- FastAP from a random initialisation (the same architecture, untrained, as ``pretrained``);
- label efficiency: both fine-tunes again on a stratified 10 % and 30 % of the training labels
  (the encoder was pretrained on every training image, unlabelled).

``val`` only chooses each run's checkpoint. The shipped path's wall time (pretrain + fine-tune,
2 Ray Train CPU workers) is timed per set. Results: a Markdown table on stdout,
``bench/results/quality_real-<sets>.json`` and ``bench/results/label_efficiency-<sets>.png``.
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

import real_sets

from echoseek.config import load_config
from echoseek.data.dataset import read_descriptor
from echoseek.jobs import evaluate, finetune, ingest, pretrain

ROOT = Path(__file__).resolve().parents[1]
SETS = {"digits": (900, 300, 597), "fashion": (1000, 300, 700)}
METHODS = ("simsiam", "byol", "barlow", "simclr", "instdisc")


def load(name: str) -> real_sets.ImageSet:
    return real_sets.digits() if name == "digits" else real_sets.fashion(200)


def prepare(name: str, fractions: list[float], work: Path) -> dict[str, Path]:
    """Ingested datasets: train, val, test and the train_<pct> label subsets."""
    data = load(name)
    split = real_sets.split_by_item(data.labels, SETS[name], seed=0)
    train = split["train"]
    for f in fractions:
        sub = real_sets.split_by_item(data.labels[train], (round(f * len(train)), 0, 0), seed=1)
        split[f"train_{round(100 * f)}"] = train[sub["train"]]
    folders = real_sets.write_splits(data, split, work / "png")
    out = {}
    for part, folder in folders.items():
        cfg = ingest.Config(input=str(folder), output=str(work / part), labels_from_folders=True)
        ingest.run(cfg)
        out[part] = work / part
    return out


def test_scores(model: str, test: Path, work: Path) -> dict[str, float]:
    """Leave-one-out mAP and P@10 on the test split, every labelled item a query."""
    out = work / f"eval-{abs(hash(model))}"
    cfg = evaluate.Config(input=str(test), model=model, positive_label=None, output=str(out))
    loo = evaluate.run(cfg)["leave_one_out"]
    return {"map": float(loo["map"]), "p@10": float(loo["p@10"])}


def run_profile(job: Any, overrides: list[str], work: Path, name: str) -> tuple[Any, float]:
    """``job`` (pretrain or finetune) with its shipped laptop profile plus ``overrides``,
    tracked under ``work``; returns (its summary, wall seconds)."""
    profile = ROOT / "ray_jobs" / f"{job.__name__.rsplit('.', 1)[-1]}.local.yaml"
    tracked = [f"run.storage_path={work / 'ray'}", f"run.experiment=bench-quality-real-{name}",
               f"run.tracking_uri=sqlite:///{work / 'mlflow.db'}", "overwrite=true"]  # fmt: skip
    cfg = load_config(job.Config, profile, [*overrides, *tracked])
    start = time.perf_counter()
    summary = job.run(cfg)
    return summary, time.perf_counter() - start


def run_pretrain(data: dict[str, Path], method: str, work: Path, name: str) -> tuple[Path, float]:
    out = work / f"ssl-{method}"
    _, seconds = run_profile(
        pretrain,
        [f"input={data['train']}", f"val={data['val']}", f"output={out}", f"method={method}",
         f"run.name={name}-pretrain-{method}"],
        work, name,
    )  # fmt: skip
    return out, seconds


def run_finetune(
    data: dict[str, Path], part: str, encoder: Path, tag: str, work: Path, name: str
) -> tuple[Path, dict[str, Any], float]:
    out = work / f"ft-{tag}-{part}"
    summary, seconds = run_profile(
        finetune,
        [f"input={data[part]}", f"val={data['val']}", f"pretrained={encoder}", f"output={out}",
         f"run.name={name}-finetune-{tag}-{part}"],
        work, name,
    )  # fmt: skip
    return out, summary, seconds


def random_encoder(like: Path, out: Path) -> Path:
    """The architecture and input transform of the encoder at ``like``, randomly initialised."""
    import dataclasses

    import torch

    from echoseek.models.artifact import META_FILE, build_model, read_meta, save_model

    meta = read_meta(like / META_FILE)
    torch.manual_seed(0)
    meta = dataclasses.replace(meta, extra={"init": "random (torch.manual_seed(0))"})
    save_model(build_model(meta), out, meta, overwrite=True)
    return out


def bench_set(name: str, methods: list[str], fractions: list[float], work: Path) -> dict[str, Any]:
    data = prepare(name, fractions, work)
    rows: dict[str, dict[str, Any]] = {"raw pixels": test_scores("pixels", data["test"], work)}
    encoders: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    for method in methods:
        encoders[method], seconds[f"pretrain {method}"] = run_pretrain(data, method, work, name)
        rows[f"{method} encoder"] = test_scores(str(encoders[method]), data["test"], work)
        print(f"[bench] {name}: {method} encoder {rows[f'{method} encoder']}", flush=True)
    ssl = encoders[methods[0]]
    rnd = random_encoder(ssl, work / "random-init")
    inits = {f"{methods[0]} + FastAP": ssl, "random init + FastAP": rnd}
    efficiency: dict[str, dict[str, float]] = {tag: {} for tag in inits}
    for tag, encoder in inits.items():
        for part in ["train", *(f"train_{round(100 * f)}" for f in fractions)]:
            slug = tag.split()[0]
            model, summary, secs = run_finetune(data, part, encoder, slug, work, name)
            scores = test_scores(str(model), data["test"], work)
            pct = 100 if part == "train" else int(part.split("_")[1])
            efficiency[tag][str(pct)] = scores["map"]
            if part == "train":
                rows[tag] = {**scores, "start_val_map": summary["start_val_map"],
                             "val_map": summary["val_map"]}  # fmt: skip
                seconds[f"finetune {slug}"] = secs
            print(f"[bench] {name}: {tag} at {pct} % labels {scores}", flush=True)
    shipped = seconds[f"pretrain {methods[0]}"] + seconds[f"finetune {methods[0]}"]
    return {"rows": rows, "label_efficiency": efficiency, "seconds": seconds, "shipped_s": shipped,
            "items": {p: read_descriptor(d)["count"] for p, d in data.items()}}  # fmt: skip


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items(), strict=True):
        for tag, by_pct in res["label_efficiency"].items():
            pcts = sorted(by_pct, key=int)
            ax.plot([int(p) for p in pcts], [by_pct[p] for p in pcts], marker="o", label=tag)
        ax.axhline(res["rows"]["raw pixels"]["map"], color="grey", ls="--", label="raw pixels")
        ax.set(title=name, xlabel="% of training labels", ylabel="test leave-one-out mAP")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.1, 0.3])
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-real-") as tmp:
        for name in args.sets:
            results[name] = bench_set(name, args.methods, args.fractions, Path(tmp) / name)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = "-".join(args.sets)  # one file per selection of sets: runs do not overwrite others
    (out / f"quality_real-{stem}.json").write_text(json.dumps(results, indent=2))
    plot(results, out / f"label_efficiency-{stem}.png")
    for name, res in results.items():
        raw = res["rows"]["raw pixels"]["map"]
        sizes = " / ".join(str(res["items"][p]) for p in real_sets.SPLITS)
        print(f"\n{name}, train / val / test {sizes} items; shipped pretrain + fine-tune "
              f"{res['shipped_s']:.0f} s")  # fmt: skip
        print("| embedding | test mAP | test P@10 | over raw pixels |")
        print("|---|---:|---:|---:|")
        for label, r in res["rows"].items():
            print(f"| {label} | {r['map']:.3f} | {r['p@10']:.3f} | {r['map'] - raw:+.3f} |")
        for tag, by_pct in res["label_efficiency"].items():
            pcts = sorted(by_pct, key=int)
            cells = ", ".join(f"{p} %: {by_pct[p]:.3f}" for p in pcts)
            print(f"label efficiency, {tag}: {cells}")
    print(f"\nwrote {out}/quality_real-{stem}.json and label_efficiency-{stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
