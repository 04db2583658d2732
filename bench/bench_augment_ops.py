"""Where the batched augmentation spends its time: each op of ``Augmenter.apply``, alone.

    .venv/bin/python bench/bench_augment_ops.py [--size 224] [--batch 64] [--threads 1]
        [--device cpu|cuda] [--reps 25]

A batch of ``--batch`` random 256 x 256 uint8 frames, the default recipe (``AugmentConfig``)
at ``--size``: one set of drawn parameters, each op timed on the output of the one before it
(``geometry`` on the unit-float frames), median and minimum of ``--reps`` calls after one
warm-up, in ms per batch; last ``two_views`` (fresh parameters each call, as training runs it).
An op that works in place is given a copy, whose time (``copy``) is in its figure. To compare
two versions of the code, run this file with ``PYTHONPATH`` set to each checkout in turn,
alternating, on the same machine (its noise moves single runs by tens of per cent).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from echoseek.data import augment as A


def timed(fn: Callable[[], object], reps: int, sync: Callable[[], None]) -> tuple[float, float]:
    """(median, min) ms of ``reps`` calls of ``fn`` after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    cfg = A.AugmentConfig(size=args.size)
    source = torch.Generator().manual_seed(0)
    frames = (torch.rand(args.batch, 1, 256, 256, generator=source) * 255).to(torch.uint8)
    frames = frames.to(device)
    augmenter = A.Augmenter(cfg, device, seed=0)
    p = augmenter.draw(frames)
    noise = torch.Generator(device).manual_seed(1)
    x = A._unit_float(frames)
    y = A.geometry(x, p, cfg.size)
    ops: dict[str, Callable[[], object]] = {
        "copy": lambda: y.clone(),
        "geometry": lambda: A.geometry(x, p, cfg.size),
        "jitter": lambda: A.jitter(y.clone(), p.brightness, p.contrast, p.contrast_first),
        "gamma": lambda: A.gamma_curve(y.clone(), p.gamma),
        "speckle": lambda: A.speckle(y.clone(), p.speckle, cfg.speckle_sigma, noise),
        "blur": lambda: A.blur(y.clone(), p.blur_sigma, cfg.blur_kernel),
        "normalise": lambda: A.normalise(y, cfg.mean, cfg.std),
        "two_views": lambda: augmenter.two_views(frames),
    }
    print(f"{args.batch} frames 256 -> {args.size} px on {device}, {args.threads} thread(s); "
          f"speckle on {int(p.speckle.sum())}, blur on {int((p.blur_sigma > 0).sum())}, "
          f"gamma on {int((p.gamma != 1).sum())} frames")  # fmt: skip
    for name, fn in ops.items():
        reps = args.reps if name != "two_views" else max(5, args.reps // 2)
        median, least = timed(fn, reps, sync)
        print(f"{name:10s} {median:8.1f} ms (min {least:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
