"""Does the training job feed its device? Step floor, feed alone, the real jobs, per-image baseline.

    .venv/bin/python bench/bench_gpu_feed.py [--device auto|cpu|cuda] [--quick] [--stages ...]
        [--results DIR] [--tag NAME]

Measured in one run on whatever device is present (``--device``), on a synthetic dataset of
smooth 256 x 256 frames written as a real dataset directory (PNG shards, as ``echoseek ingest``
writes them):

(a) **step floor**: echoseek's SimSiam ResNet-18 step on synthetic tensors already on the
    device (bf16 autocast and channels_last on a GPU), what the job should approach;
(b) **feed alone**: the job's data path into a Ray Train worker (``frame_dataset`` -> Ray Data
    decode tasks -> ``iter_torch_batches`` -> two augmented views on the worker's device) with
    no model step: how fast the data arrives;
(c) the real ``echoseek pretrain`` job (last epoch's img/s, data-wait share, time to first step),
    and on a GPU the same job with ``scale.compile=true``;
(d) the real ``echoseek finetune`` and ``echoseek embed`` jobs, and the fine-tune's input alone
    (m-per-class batches read and decoded in the worker's threads, no step) per epoch, with the
    decoded frames kept after the first epoch and, side by side, decoded again every epoch.

Beside (b), the per-image two-view augmentation echoseek ran before (``bench/per_image_augment``:
decode, then torchvision v2 per image, on one core as one Ray Data task ran it) is timed on the
same frames, at 64 and 224 px. The last line reads
``feed 224px: batched N img/s, per-image M img/s, ratio R``. ``--quick`` (CPU, about 3 minutes
on 2 cores) runs the step floor and the jobs at 32 px (the laptop profiles' size) on a few
hundred frames, and is what a CPU always runs (``make bench``); on a GPU without it, (a)-(d) run
at 224 px with the full ResNet stem, batch 256 and 8192 frames. Results go to
``bench/results/gpu_feed-<device>[-quick][-<tag>].json`` (``--results``: another folder), written
again after every stage, so a run cut off by a time limit keeps what it measured.
``bench/gpu_check.sh`` runs it on a lent GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from per_image_augment import build_transform

from echoseek.config import load_config
from echoseek.data.augment import AugmentConfig
from echoseek.data.dataset import DatasetWriter, Row, decode_png, iter_batches
from echoseek.data.frames import to_chw
from echoseek.training.reporting import feed_summary

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = (  # in the order they run; pretrain_compile and compile run on a GPU only
    "augment", "floor", "feed", "input", "pretrain", "finetune", "embed", "pretrain_compile",
    "compile",
)  # fmt: skip
FRAME = 256  # side of the synthetic frames
CLASSES = 8  # labels i % CLASSES (fine-tuning needs several per batch)


def synthetic_dataset(path: Path, count: int, seed: int = 0) -> Path:
    """``count`` smooth FRAME x FRAME grayscale frames (a few Gaussian blobs on a gradient,
    mild noise), labels i % CLASSES, written as an echoseek dataset directory."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME, 0:FRAME] / FRAME
    with DatasetWriter(path, {"kind": "bench_gpu_feed"}, shard_size=512) as writer:
        for i in range(count):
            image = 0.3 * yy
            for _ in range(3):
                cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.03, 0.1)
                image = image + 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            image = image + rng.normal(0, 0.03, image.shape)
            pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            writer.add(Row(id=f"f{i:06d}", image=pixels, source="synthetic", label=i % CLASSES))
    return path


def rate(fn: Callable[[], int], seconds: float, warmup: int = 1) -> float:
    """Items per second of repeated ``fn()`` calls (each returns its item count) over about
    ``seconds`` of wall time, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += fn()
    return done / (time.perf_counter() - start)


def per_image_rate(pngs: list[bytes], size: int, seconds: float) -> float:
    """Two views per image, decoded and augmented one image at a time on one thread (the
    per-image path echoseek ran in each Ray Data task before): img/s."""
    transform = build_transform(AugmentConfig(size=size))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:

        def batch() -> int:
            for data in pngs:
                image = torch.from_numpy(to_chw(decode_png(data), 1))
                transform(image), transform(image)
            return len(pngs)

        return rate(batch, seconds)
    finally:
        torch.set_num_threads(threads)


def batched_rate(pngs: list[bytes], size: int, device: torch.device, seconds: float) -> float:
    """Two views per image from the batched augmentation alone, in this process on
    ``device`` (all its threads), the frames already decoded: img/s."""
    from echoseek.data.augment import Augmenter
    from echoseek.data.frames import decode_frames

    frames = torch.from_numpy(decode_frames(pngs, 1, (FRAME, FRAME))).to(device)
    augmenter = Augmenter(AugmentConfig(size=size), device, seed=0)

    def batch() -> int:
        view1, _ = augmenter.two_views(frames)
        float(view1[0, 0, 0, 0])  # wait for the device
        return len(frames)

    return rate(batch, seconds)


def step_floor(
    device: torch.device,
    size: int,
    batch: int,
    small_stem: bool,
    seconds: float,
    compile_model: bool = False,
) -> float:
    """img/s of the SimSiam ResNet-18 training step on synthetic device tensors
    (``compile_model``: under ``torch.compile``, its compile time spent in the warm-up)."""
    from echoseek.models import build_backbone, build_method
    from echoseek.training import amp_dtype, autocast, param_groups

    torch.manual_seed(0)
    model = build_method("simsiam", build_backbone("resnet18", 1, small_stem, "avg")).to(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    step_model = torch.compile(model) if compile_model else model
    groups = param_groups(model, fixed_lr_prefixes=("predictor",), weight_decay=1e-4)
    optimizer = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    views = [torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=fmt)
             for _ in range(2)]  # fmt: skip
    dtype = amp_dtype(device, True)

    def step() -> int:
        with autocast(device, dtype):
            loss = step_model(views[0], views[1], None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # one sync per step, as train_epoch
        return batch

    return rate(step, seconds, warmup=3)


def feed_alone(dataset: Path, size: int, batch: int, steps: int, use_gpu: bool) -> dict[str, float]:
    """The job's data path into one Ray Train worker, two views on its device, no model step:
    steady img/s after the first batch, and the seconds to that first batch."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from echoseek.data.views import frame_dataset
    from echoseek.ray_session import cluster_cpus
    from echoseek.training.options import ScaleOptions
    from echoseek.training.trainer import data_task_limit

    scale = ScaleOptions(num_workers=1, use_gpu=use_gpu, cpus_per_worker=0.5)
    stream = frame_dataset(
        str(dataset), 1, size, batch_size=batch, num_cpus=scale.data_cpus, epochs=50,
        tasks=data_task_limit(scale, cluster_cpus()),
    )  # fmt: skip

    def loop(config: dict[str, Any]) -> None:
        import ray.train
        import ray.train.torch

        from echoseek.data.augment import Augmenter
        from echoseek.training import two_view_inputs
        from echoseek.training.worker import worker_threads

        device = ray.train.torch.get_device()
        torch.set_num_threads(worker_threads(0, os.cpu_count() or 1, 1))  # as the job
        views = two_view_inputs(Augmenter(AugmentConfig(size=config["size"]), device, 0))
        batches = ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=config["batch"], drop_last=True, prefetch_batches=2,
            pin_memory=device.type == "cuda",
        )  # fmt: skip
        start, first, images, wait = time.perf_counter(), 0.0, 0, 0.0
        stream = iter(batches)
        for i in range(config["steps"] + 1):
            before = time.perf_counter()
            b = next(stream)
            if i > 0:
                wait += time.perf_counter() - before
            out = views({k: v.to(device, non_blocking=True) for k, v in b.items()})
            float(out["view1"][0, 0, 0, 0])  # wait for the device
            if i == 0:
                first = time.perf_counter()
            else:
                images += len(b["index"])
        seconds = time.perf_counter() - first
        metrics = {"steady_images_per_s": images / seconds, "first_batch_s": first - start,
                   "data_wait_fraction": wait / seconds}  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:  # Train V2 keeps metrics of checkpointed reports
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    resources = {"CPU": scale.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    trainer = TorchTrainer(
        loop,
        train_loop_config={"size": size, "batch": batch, "steps": steps},
        scaling_config=ScalingConfig(
            num_workers=1, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(name=f"feed-{time.time_ns()}", storage_path=str(dataset.parent)),
        datasets={"train": stream},
    )
    result = trainer.fit()
    return {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}


def finetune_input(dataset: Path, batch: int, epochs: int, threads: int) -> dict[str, list]:
    """img/s of each epoch of the fine-tune's input alone (``LabelledFrames`` ->
    ``decoded_batches`` with ``threads`` decode threads, m-per-class batches of ``batch``, no
    step): with the decoded frames kept (the job's default) and with none kept."""
    from echoseek.data.labelled import (
        FRAME_CACHE_BYTES,
        LabelledFrames,
        decoded_batches,
        label_index,
    )
    from echoseek.data.samplers import MPerClassBatchSampler

    index = label_index(dataset)
    sampler = MPerClassBatchSampler(index.labels, batch // CLASSES, batch, 0)
    found: dict[str, list] = {}
    for name, budget in (("kept", FRAME_CACHE_BYTES), ("decoded_every_epoch", 0)):
        frames = LabelledFrames(index, 1, (FRAME, FRAME), cache_bytes=budget)
        found[name] = []
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            start, images = time.perf_counter(), 0
            for b in decoded_batches(frames, sampler, threads=threads):
                images += len(b["label"])
            found[name].append(images / (time.perf_counter() - start))
    return found


def measured(value: Any) -> bool:
    """Whether a stage ran and did not fail."""
    return value is not None and not (isinstance(value, dict) and "error" in value)


def job_overrides(args: argparse.Namespace, work: Path, use_gpu: bool) -> list[str]:
    """Settings shared by the pretrain and finetune runs of this benchmark."""
    return [
        f"augment.size={args.job_size}",
        f"scale.use_gpu={str(use_gpu).lower()}",
        "scale.num_workers=1",
        f"run.storage_path={work / 'ray'}",
        f"run.tracking_uri=sqlite:///{work / 'mlflow.db'}",
        "overwrite=true",
    ]


def pretrain_job(
    args: argparse.Namespace, dataset: Path, work: Path, use_gpu: bool, compiled: bool = False
) -> dict:
    """The real ``echoseek pretrain`` job (``compiled``: with ``scale.compile=true``, its model
    under ``torch.compile``; the compile is paid inside the job, as a user pays it)."""
    from echoseek.jobs import pretrain

    small = "true" if args.job_size <= 64 else "false"
    output = work / ("ssl-compiled" if compiled else "ssl")
    cfg = load_config(pretrain.Config, None, [
        f"input={dataset}", f"output={output}", f"epochs={args.epochs}",
        f"batch_size={args.batch}", f"model.small_stem={small}", "optim.warmup_epochs=0",
        "probe_size=64", f"run.name=pretrain-{time.time_ns()}",
        f"scale.compile={str(compiled).lower()}", *job_overrides(args, work, use_gpu),
    ])  # fmt: skip
    start = time.perf_counter()
    out = pretrain.run(cfg)
    return {**feed_summary(out), "wall_s": time.perf_counter() - start}


def trained_or_fresh(work: Path, name: str, size: int) -> Path:
    """``work / name`` when an earlier stage of this run saved that model there, else a randomly
    initialised ResNet-18 encoder saved as the pretrain job exports one: throughput does not
    depend on the weights, so ``finetune`` and ``embed`` can be measured without the stages
    before them (``--stages embed`` on a device with little time)."""
    from echoseek.models.artifact import ModelMeta, build_model, save_model

    if (work / name).is_dir():
        return work / name
    meta = ModelMeta(
        small_stem=size <= 64, head_dim=None, head_hidden=None, input_size=(size, size),
        mean=(0.5,), std=(0.5,), distance="cosine",
    )  # fmt: skip
    return save_model(build_model(meta), work / "fresh-encoder", meta, overwrite=True)


def finetune_job(args: argparse.Namespace, dataset: Path, work: Path, use_gpu: bool) -> dict:
    from echoseek.jobs import finetune

    pretrained = trained_or_fresh(work, "ssl", args.job_size)
    cfg = load_config(finetune.Config, None, [
        f"input={dataset}", f"pretrained={pretrained}", f"output={work / 'ft'}",
        f"epochs={args.epochs}", f"batch_size={args.batch}", f"loss.m={args.batch // CLASSES}",
        f"run.name=finetune-{time.time_ns()}", *job_overrides(args, work, use_gpu),
    ])  # fmt: skip
    start = time.perf_counter()
    out = finetune.run(cfg)
    return {**feed_summary(out), "wall_s": time.perf_counter() - start}


def embed_job(dataset: Path, work: Path, use_gpu: bool, size: int) -> dict:
    from echoseek.jobs import embed

    model = trained_or_fresh(work, "ft", size)
    cfg = embed.Config(input=str(dataset), output=str(work / "vectors"), model=str(model),
                       use_gpu=use_gpu, batch_size=256, overwrite=True)  # fmt: skip
    out = embed.run(cfg)
    keys = ("images_per_s", "steady_images_per_s", "start_s", "seconds")
    return {k: float(out[k]) for k in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated subset of {','.join(STAGES)} (finetune and embed use the "
        "models of pretrain and finetune when those ran, else a randomly initialised encoder)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the result file")
    parser.add_argument("--tag", default="", help="appended to the result file's name")
    args = parser.parse_args()
    wanted = set(args.stages.split(","))
    if wanted - set(STAGES):
        parser.error(f"--stages: unknown {sorted(wanted - set(STAGES))}; choose from {STAGES}")
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    quick = args.quick or not cuda  # a CPU runs the small size: 224 px jobs would take hours
    args.frames = 256 if quick else 8192
    args.job_size = 32 if quick else 224
    args.batch = 32 if quick else 256
    args.epochs = 2 if quick else 3
    feed_batch = 256 if cuda else 64
    seconds = 3.0 if quick else 6.0
    found: dict[str, Any] = {"device": str(device), "quick": quick, "cpus": os.cpu_count(),
                             "torch": torch.__version__, "frames": args.frames}  # fmt: skip
    if cuda:
        found["gpu"] = torch.cuda.get_device_name()

    import ray

    from echoseek.ray_session import ensure_ray

    def say(line: str) -> None:
        print(line, flush=True)

    args.results.mkdir(parents=True, exist_ok=True)
    tag = f"-{args.tag}" if args.tag else ""
    result_file = args.results / f"gpu_feed-{device.type}{'-quick' if quick else ''}{tag}.json"

    def stage(key: str, fn: Callable[[], Any]) -> Any:
        """Run one measurement and record it, or its error (then None: the other stages still
        run); save what is known so far, so a run cut off by a time limit keeps its figures."""
        try:
            found[key] = fn()
        except Exception as exc:
            found[key] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"{key}: FAILED {found[key]['error']}")
        result_file.write_text(json.dumps(found, indent=2) + "\n")
        return None if isinstance(found[key], dict) and "error" in found[key] else found[key]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = synthetic_dataset(work / "ds", args.frames)
        pngs = [r["image"] for b in iter_batches(dataset, batch_size=64) for r in b.to_pylist()]
        pngs = pngs[:64]
        for size in (64, 224) if "augment" in wanted else ():
            if r := stage(f"per_image_{size}", partial(per_image_rate, pngs, size, seconds)):
                say(f"per-image two views {size}px, 1 thread: {r:.0f} img/s")
            if r := stage(f"batched_{size}", partial(batched_rate, pngs, size, device, seconds)):
                say(f"batched two views {size}px alone on {device.type}: {r:.0f} img/s")
        size, small = args.job_size, args.job_size <= 64
        found["floor_size"] = size
        if "floor" in wanted and (
            r := stage("step_floor", partial(step_floor, device, size, args.batch, small, seconds))
        ):
            say(f"(a) step floor {size}px batch {args.batch}: {r:.0f} img/s")
        ensure_ray()
        steps = 24 if quick else 100
        for size in (64, 224) if "feed" in wanted else ():
            if f := stage(
                f"feed_{size}", partial(feed_alone, dataset, size, feed_batch, steps, cuda)
            ):
                say(
                    f"(b) feed alone {size}px: {f['steady_images_per_s']:.0f} img/s, data wait "
                    f"{f['data_wait_fraction']:.0%} (first batch after {f['first_batch_s']:.1f} s)"
                )
        if "input" in wanted:
            from echoseek.training.worker import decode_threads

            threads = decode_threads(device, os.cpu_count() or 1, 1)  # as the job, one worker
            measure = partial(finetune_input, dataset, args.batch, 3, threads)
            if r := stage("finetune_input", measure):
                kept, again = ([round(x) for x in r[k]] for k in ("kept", "decoded_every_epoch"))
                say(f"(d) fine-tune input alone, img/s per epoch: frames kept {kept}, decoded "
                    f"every epoch {again}")  # fmt: skip
        for key, job in (("pretrain", pretrain_job), ("finetune", finetune_job)):
            if key in wanted and (r := stage(key, partial(job, args, dataset, work, cuda))):
                say(f"({'c' if key == 'pretrain' else 'd'}) {key} {args.job_size}px: {r}")
        embed = partial(embed_job, dataset, work, cuda, args.job_size)
        if "embed" in wanted and (r := stage("embed", embed)):
            say(f"(d) embed: {r}")
        if cuda and "pretrain_compile" in wanted:  # what decides scale.compile's default
            job = partial(pretrain_job, args, dataset, work, cuda, compiled=True)
            if r := stage("pretrain_compiled", job):
                say(f"(c) pretrain {args.job_size}px with scale.compile=true: {r}")
        ray.shutdown()
        if (
            cuda and "compile" in wanted
        ):  # last: compiling costs a minute of device time before it can win anything
            size = args.job_size
            compiled = partial(step_floor, device, size, args.batch, small, seconds, True)
            if r := stage("step_floor_compiled", compiled):
                say(f"(a) step floor under torch.compile: {r:.0f} img/s")
    for size in (64, 224):
        if not all(measured(found.get(k)) for k in (f"feed_{size}", f"per_image_{size}")):
            continue
        batched = found[f"feed_{size}"]["steady_images_per_s"]
        per_image = found[f"per_image_{size}"]
        say(f"feed {size}px: batched {batched:.0f} img/s, per-image {per_image:.0f} img/s, "
            f"ratio {batched / per_image:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
