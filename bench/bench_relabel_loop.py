"""The team's loop, measured: noisy pseudo-labels -> fine-tune -> a user marks hits on the
service -> relabel -> fine-tune again -> promote through the registry -> swap the service.

    .venv/bin/python bench/bench_relabel_loop.py [--seeds 0] [--rounds 3] [--queries 4]

Data (phantom cines, the demo's size and training recipe: 445 frames, 32 px, SimSiam 1 epoch
then FastAP 3 epochs on 2 CPU workers, breath-hold labels). Four subjects, each with one role:

- ``train`` (seed ``s+1``): the corpus the service searches and the fine-tune trains on. Its
  labels are pseudo-labels with realistic noise: 20 % of the true positives flipped to 0, and
  every hard-negative frame (probe shift, rib sweep) marked 1;
- ``val`` (seed ``s+2``, true labels): where each fine-tune chooses its checkpoint;
- ``promote`` (seed ``s``, true labels): the registry's held-out check (``echoseek model
  promote``: a round becomes ``@champion`` only when it beats the champion's mAP there);
- ``test`` (seed ``s+3``, true labels): the held-out mAP reported (leave-one-out over the
  positives). Nothing trains on it or chooses anything by it.

Round 0 fine-tunes on the noisy labels and is promoted (there is no champion yet); the service
(real HTTP, uvicorn in this process) serves an index of the train corpus embedded by the
champion. Each round a simulated user searches ``--queries`` true-positive frames by id
(``POST /v1/search``, top 10) and marks every hit with its true label (``POST
/v1/feedback``); the log is exported (``GET /v1/feedback``, admin), applied with ``echoseek
relabel`` to the previous dataset version, and the fine-tune runs again on the new version; a
promoted round is embedded, indexed as a new version and swapped in (``POST /v1/admin/index``).
A model fine-tuned on the true labels is the reference. Results: a Markdown table on stdout
and ``bench/results/relabel_loop.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx
import numpy as np
import scipy.io

from echoseek.data.dataset import labelled_ids
from echoseek.jobs import embed, evaluate, finetune, index_build, ingest, model_promote, pretrain
from echoseek.jobs.demo.stages import training_configs
from echoseek.jobs.relabel import Config as RelabelConfig
from echoseek.jobs.relabel import run as relabel
from echoseek.phantom import Phantom, PhantomParams, generate_phantom
from echoseek.ray_session import set_verbosity
from echoseek.service.config import ServiceConfig
from echoseek.service.run import start_service

ROOT = Path(__file__).resolve().parents[1]
FRAMES, SIZE, TOP = 445, 32, 10
FLIP_POSITIVES = 0.2


def write_cine(p: Phantom, labels: np.ndarray, out: Path) -> Path:
    """Ingest a phantom's frames with ``labels`` as a dataset dir."""
    out.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(out / "cine.mat", {"frames": np.transpose(p.frames, (1, 2, 0))})
    rows = "".join(f"{i},{int(v)}\n" for i, v in enumerate(labels))
    (out / "labels.csv").write_text("frame_index,label\n" + rows)
    ingest.run(
        ingest.Config(
            input=str(out / "cine.mat"),
            labels=str(out / "labels.csv"),
            output=str(out / "dataset"),
            frame_axis=2,
        )
    )
    return out / "dataset"


def noisy(truth: np.ndarray, hard_negative: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pseudo-labels: ``FLIP_POSITIVES`` of the positives flipped to 0, hard negatives set to 1."""
    out = truth.copy()
    positives = np.flatnonzero(truth == 1)
    out[rng.choice(positives, round(FLIP_POSITIVES * len(positives)), replace=False)] = 0
    out[hard_negative & (truth == 0)] = 1
    return out


def held_out_map(model: str, dataset: Path) -> float:
    """Leave-one-out mAP over the positives of ``dataset``."""
    cfg = evaluate.Config(input=str(dataset), model=model, latency_repeats=1, positive_label=1)
    return float(evaluate.measure(cfg).result["leave_one_out"]["map"])


def fine_tune(base: finetune.Config, data: Path, out: Path, name: str) -> str:
    run = dataclasses.replace(base.run, name=f"{name}-{time.strftime('%H%M%S')}")
    finetune.run(dataclasses.replace(base, input=str(data), output=str(out), run=run))
    return str(out)


def publish_index(model: str, data: Path, work: Path, root: Path, tag: str) -> None:
    """Embed the corpus with ``model`` and publish it as a new version under ``root``."""
    vectors = work / f"vectors-{tag}"
    embed.run(embed.Config(input=str(data), model=model, output=str(vectors), overwrite=True))
    index_build.run(index_build.Config(input=str(vectors), output=str(root)))


def item_ids(client: httpx.Client) -> dict[str, int]:
    """Dataset item id -> the served version's internal id."""
    total = int(client.get("/v1/index").json()["ntotal"])
    return {client.get(f"/v1/items/{i}").json()["item"]: i for i in range(total)}


def user_marks(
    client: httpx.Client, queries: list[str], truth: dict[str, int], ids: dict[str, int]
) -> int:
    """Search each query frame by id and mark its top hits with their true labels."""
    marks = 0
    for item in queries:
        hits = client.post("/v1/search", json={"id": ids[item], "k": TOP}).json()["results"]
        for hit in hits:
            label = truth[hit["item"]]
            body = {"id": hit["id"], "label": label, "query": f"item:{ids[item]}",
                    "mark": "positive" if label == 1 else "negative"}  # fmt: skip
            client.post("/v1/feedback", json=body).raise_for_status()
            marks += 1
    return marks


def wrong_labels(data: Path, truth: dict[str, int]) -> int:
    ids, labels = labelled_ids(data)
    return sum(truth[i] != label for i, label in zip(ids, labels, strict=True))


def loop(seed: int, rounds: int, queries: int, work: Path) -> dict[str, Any]:
    cines = {
        role: generate_phantom(PhantomParams(seed=seed + off, frames=FRAMES))
        for role, off in (("train", 1), ("val", 2), ("promote", 0), ("test", 3))
    }
    rng = np.random.default_rng(seed)
    train = cines["train"]
    sets = {r: write_cine(p, p.labels, work / r) for r, p in cines.items() if r != "train"}
    data = write_cine(train, noisy(train.labels, train.hard_negative, rng), work / "train-noisy")
    clean = write_cine(train, train.labels, work / "train-clean")
    truth = {f"cine:{i:06d}": int(v) for i, v in enumerate(train.labels)}
    assert set(truth) == set(labelled_ids(data)[0]), "item ids are cine:<frame>"
    pre, base = training_configs(
        work, data, size=SIZE, train_labels="breath_hold", pretrain_epochs=1,
        finetune_epochs=3, val=sets["val"],
    )  # fmt: skip
    pretrain.run(pre)
    store = base.run.tracking_uri
    started = time.perf_counter()
    reference = held_out_map(fine_tune(base, clean, work / "model-clean", "clean"), sets["test"])
    rows: list[dict[str, Any]] = []
    root, marks, version = work / "index", 0, data
    positives = [k for k, v in truth.items() if v == 1]
    order = list(rng.permutation(positives))
    running = None
    try:
        for r in range(rounds + 1):
            model = fine_tune(base, version, work / f"model-r{r}", f"round{r}")
            decision = model_promote.run(
                model_promote.Config(
                    input=str(sets["promote"]), model=model, name="loop", tracking_uri=store
                )
            )
            row = {
                "round": r,
                "marks": marks,
                "wrong_labels": wrong_labels(version, truth),
                "test_map": held_out_map(model, sets["test"]),
                "promote_map": decision["scores"]["candidate"],
                "promoted": decision["promoted"],
            }
            if decision["promoted"]:
                publish_index(model, version, work, root, f"r{r}")
                if running is None:
                    cfg = ServiceConfig(index=str(root), port=free_port())
                    running = start_service(cfg, use_ray=False)
                else:
                    with httpx.Client(base_url=running.url, timeout=60) as c:
                        c.post("/v1/admin/index", json={"version": "latest"}).raise_for_status()
            assert running is not None
            with httpx.Client(base_url=running.url, timeout=60) as c:
                row["served"] = c.get("/v1/index").json()["version"]
                rows.append(row)
                print(json.dumps(row), flush=True)
                if r == rounds:
                    break
                ids = item_ids(c)
                asked = order[r * queries : (r + 1) * queries]
                marks += user_marks(c, asked, truth, ids)
                export = work / f"feedback-r{r + 1}.csv"
                export.write_text(c.get("/v1/feedback").text)
            nxt = work / f"train-r{r + 1}"
            relabel(RelabelConfig(input=str(version), corrections=str(export), output=str(nxt)))
            version = nxt
    finally:
        if running is not None:
            running.stop()
    return {
        "seed": seed,
        "clean_test_map": reference,
        "pixels_test_map": held_out_map("pixels", sets["test"]),
        "noisy_labels": wrong_labels(data, truth),
        "positives": len(positives),
        "rounds": rows,
        "seconds": time.perf_counter() - started,
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| seed | round | marks | wrong labels | test mAP | promote-set mAP | promoted |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        for row in run["rounds"]:
            lines.append(
                f"| {run['seed']} | {row['round']} | {row['marks']} | {row['wrong_labels']} | "
                f"{row['test_map']:.3f} | {row['promote_map']:.3f} | "
                f"{'yes' if row['promoted'] else 'no (champion kept)'} |"
            )
        lines.append(
            f"| {run['seed']} | clean labels | | 0 | {run['clean_test_map']:.3f} | | |\n"
            f"| {run['seed']} | raw pixels | | | {run['pixels_test_map']:.3f} | | |"
        )
    return "\n".join(lines)


def main() -> int:
    set_verbosity(False)  # echoseek's lines only, as the CLI prints them
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=4, help="queries the user marks per round")
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
            runs.append(loop(seed, args.rounds, args.queries, Path(tmp)))
    print("\n" + table(runs))
    out = ROOT / "bench" / "results" / "relabel_loop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "runs": runs}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
