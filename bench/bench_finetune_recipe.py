"""Why a short fine-tune degraded, measured: one recipe change at a time, on real images.

    make real-sets && .venv/bin/python bench/bench_finetune_recipe.py [--sets fashion digits]

For each set of :mod:`real_sets` (the splits of ``bench_quality_real.py``), a SimSiam encoder
is pretrained once with the shipped ``ray_jobs/pretrain.local.yaml``; then every variant below
fine-tunes it **in this process** (one worker, no Ray: the same model, sampler, FastAP loss,
data path and epoch loop as ``echoseek finetune``, so the only difference between two rows is
the variant), 3 epochs at 64 px. Each row reports the held-out (val) mAP of the pretrained
encoder before the first step, the val mAP after each epoch and the **test** mAP of the last
epoch (test is never trained on or used to choose anything). The candidates are those issue 13
lists: the learning rate of the backbone against the head (with warmup), BatchNorm statistics
kept at the pretrained values, the head's form and initialisation, the augmentation profile,
the batch (classes per batch) and FastAP's bins against the distances' actual range. FastAP
bins the whole range the distance can take on unit vectors (squared Euclidean: [0, 4]); each
row also reports the 1st-99th percentile of the squared distances the model starts from on
the training rows, and a variant with 4x finer bins tests whether the distances crowding
into a few of the 10 bins is what hurts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from bench_quality_real import prepare, run_pretrain

from echoseek.data.augment import PHASE_RETRIEVAL, AugmentConfig, Augmenter, eval_transform
from echoseek.data.dataset import read_descriptor
from echoseek.data.frames import frame_shape
from echoseek.data.labelled import LabelIndex, LabelledFrames, decoded_batches, label_index
from echoseek.data.samplers import MPerClassBatchSampler
from echoseek.losses import FastAPLoss
from echoseek.models.artifact import eval_augment, load_model, model_input
from echoseek.models.finetune import build_finetune_model
from echoseek.training import (
    augmented_inputs,
    embed_batches,
    retrieval_metrics,
    train_epoch,
    warmup_cosine,
)
from echoseek.training.finetune import finetune_groups
from echoseek.training.loop import fastap_step

NO_AUGMENT = {
    "crop_scale_min": 1.0, "brightness": 0.0, "contrast": 0.0, "hflip_prob": 0.0,
    "rotation_deg": 0.0, "blur_prob": 0.0, "speckle_prob": 0.0, "gamma_prob": 0.0,
}  # fmt: skip
# FinetuneConfig's default augmentation
LIGHT = {"crop_scale_min": 0.6, "rotation_deg": 5.0, "blur_prob": 0.0, "speckle_prob": 0.3,
         "gamma_prob": 0.2}  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One fine-tuning recipe: what differs from the shipped laptop profile."""

    name: str
    augment: dict[str, Any] = field(default_factory=lambda: dict(NO_AUGMENT))
    batch: int = 64
    m: int = 8
    lr: float = 1e-3
    backbone_lr_scale: float = 1.0
    warmup_epochs: float = 0.0
    hidden: int | None = 512
    head_init_scale: float = 1.0
    frozen_bn: bool = False
    num_bins: int = 10


VARIANTS = [
    Variant("shipped: no augmentation, 64 = 8 classes x 8, lr 1e-3"),
    Variant("light augmentation (FinetuneConfig default)", augment=LIGHT),
    Variant("phase augmentation (the demo's)", augment=dict(PHASE_RETRIEVAL)),
    Variant("32 = 8 classes x 4 (the old laptop batch)", batch=32, m=4),
    Variant("light augmentation, 32 = 8 x 4 (the old profile)", augment=LIGHT, batch=32, m=4),
    Variant("backbone lr x 0.1 + 1 warmup epoch", backbone_lr_scale=0.1, warmup_epochs=1.0),
    Variant("1 warmup epoch", warmup_epochs=1.0),
    Variant("lr 3e-3", lr=3e-3),
    Variant("linear head (no hidden layer)", hidden=None),
    Variant("head output layer initialised x 0.1", head_init_scale=0.1),
    Variant("FastAP 40 bins (4x finer over [0, 4])", num_bins=40),
    Variant("BatchNorm statistics frozen at the encoder's", frozen_bn=True),
]


def freeze_batchnorm(model: torch.nn.Module) -> Callable[[bool], Any]:
    """A ``train`` that keeps every BatchNorm of the backbone in eval mode."""
    plain_train = model.train

    def train(mode: bool = True) -> Any:
        plain_train(mode)
        for module in model.backbone.modules():  # type: ignore[union-attr]
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
        return model

    return train


def eval_batches(path: Path, augment: AugmentConfig) -> list[dict[str, Any]]:
    """Every labelled row of a dataset, transformed once for evaluation."""
    index = label_index(path)
    order = np.arange(len(index))
    picks = [list(order[i : i + 128]) for i in range(0, len(order), 128)]
    shape = frame_shape(read_descriptor(path), augment.size)
    batches = decoded_batches(LabelledFrames(index, 1, shape), picks)
    return [{**b, "image": eval_transform(b["image"], augment)} for b in batches]


def scores(model: torch.nn.Module, batches: Iterable[dict[str, Any]]) -> float:
    vectors, labels = embed_batches(model, batches, torch.device("cpu"))
    return float(retrieval_metrics(vectors, labels, 10, None)["map"])


def distance_spread(model: torch.nn.Module, batches: Iterable[dict[str, Any]]) -> list[float]:
    """1st and 99th percentiles of the squared Euclidean distances between distinct rows."""
    vectors, _ = embed_batches(model, batches, torch.device("cpu"))
    v = torch.as_tensor(vectors, dtype=torch.float32)
    d = (2 - 2 * v @ v.T)[~torch.eye(len(v), dtype=torch.bool)]
    return [
        float(x)
        for x in torch.quantile(d[:: max(1, len(d) // 100_000)], torch.tensor([0.01, 0.99]))
    ]


def scale_output_layer(model: torch.nn.Module, factor: float) -> None:
    """Multiply the head's last Linear layer (weights and bias) by ``factor``."""
    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]  # type: ignore[union-attr]
    with torch.no_grad():
        last.weight.mul_(factor)
        last.bias.mul_(factor)


def fine_tune(encoder_dir: Path, data: dict[str, Path], v: Variant, epochs: int) -> dict[str, Any]:
    torch.manual_seed(0)
    encoder, meta = load_model(encoder_dir)
    val, test = (eval_batches(data[p], eval_augment(meta)) for p in ("val", "test"))
    start = scores(encoder, val)
    model = build_finetune_model(encoder, dim=128, hidden=v.hidden, trainable="all")
    if v.head_init_scale != 1.0:
        scale_output_layer(model, v.head_init_scale)
    if v.frozen_bn:
        model.train = freeze_batchnorm(model)  # type: ignore[method-assign]
    groups = finetune_groups(model, v.backbone_lr_scale)
    optimizer = torch.optim.AdamW(groups, lr=v.lr, weight_decay=1e-4)
    spread = distance_spread(model, eval_batches(data["train"], eval_augment(meta)))
    index: LabelIndex = label_index(data["train"])
    sampler = MPerClassBatchSampler(index.labels, v.m, v.batch, 0, num_replicas=1, rank=0)
    augment = AugmentConfig(**{**v.augment, **model_input(meta)})
    shape = frame_shape(read_descriptor(data["train"]), augment.size)
    frames, augmenter = LabelledFrames(index, 1, shape), Augmenter(augment, seed=0)
    steps = len(sampler)
    total, warmup = steps * epochs, int(v.warmup_epochs * steps)
    loss = FastAPLoss(v.num_bins, "sqeuclidean")
    curve, started = [], time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        train_epoch(
            model=model,
            batches=decoded_batches(frames, sampler),
            prepare=augmented_inputs(augmenter),
            optimizer=optimizer,
            step_fn=fastap_step(loss),
            lr_at=lambda s: v.lr * warmup_cosine(s, total, warmup),
            start_step=epoch * steps,
            device=torch.device("cpu"),
        )
        curve.append(scores(model, val))
    seconds = time.perf_counter() - started
    return {"variant": v.name, "start_sqdist_p1_p99": spread, "start_val_map": start,
            "val_map": curve, "test_map": scores(model, test), "train_s": seconds}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["fashion", "digits"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variants", nargs="*", type=int, help="indices into VARIANTS")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    chosen = [VARIANTS[i] for i in args.variants] if args.variants else VARIANTS
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-finetune-recipe-") as tmp:
        for name in args.sets:
            work = Path(tmp) / name
            data = prepare(name, [], work)
            encoder, _ = run_pretrain(data, "simsiam", work, name)
            results[name] = []
            for v in chosen:
                results[name].append(fine_tune(encoder, data, v, args.epochs))
                print(f"[bench] {name}: {json.dumps(results[name][-1])}", flush=True)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune_recipe.json").write_text(json.dumps(results, indent=2))
    for name, rows in results.items():
        print(f"\n{name}: SimSiam encoder (ray_jobs/pretrain.local.yaml), {args.epochs} epochs")
        print("| variant | start sq. dist. p1-p99 | val mAP before | val mAP per epoch "
              "| test mAP | s |")  # fmt: skip
        print("|---|---|---:|---|---:|---:|")
        for r in rows:
            curve = " → ".join(f"{x:.3f}" for x in r["val_map"])
            lo, hi = r["start_sqdist_p1_p99"]
            print(f"| {r['variant']} | {lo:.2f}-{hi:.2f} | {r['start_val_map']:.3f} | {curve} | "
                  f"{r['test_map']:.3f} | {r['train_s']:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
