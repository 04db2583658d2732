"""FastAP forward + backward: echoseek.losses.fastap vs pytorch-metric-learning, same run.

    .venv/bin/python bench/bench_fastap.py [--threads 1] [--reps 7]

Both losses get the same L2-normalised float32 embeddings (d=128) and labels (8 or 16 per
class), 10 bins over squared-L2 distances in [0, 4]. Time is the median wall time of ``--reps``
forward + backward passes after one warm-up. Peak memory is the CPU memory recorded by the
PyTorch profiler (``profile_memory=True``) during one pass: every allocation and free, ordered
by time and summed, at operator granularity (scratch memory freed inside a single operator is
not seen). Values are also checked to agree.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from pytorch_metric_learning import losses as pml_losses
from torch.profiler import ProfilerActivity, profile

from echoseek.losses.fastap import FastAPLoss

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_batch(n: int, dim: int, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(n)
    emb = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)
    labels = torch.randperm(n, generator=gen) % (n // per_class)
    return emb, labels


def step(loss_fn: Loss, emb: torch.Tensor, labels: torch.Tensor) -> float:
    x = emb.clone().requires_grad_()
    loss = loss_fn(x, labels)
    loss.backward()
    return loss.item()


def median_seconds(loss_fn: Loss, emb: torch.Tensor, labels: torch.Tensor, reps: int) -> float:
    step(loss_fn, emb, labels)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step(loss_fn, emb, labels)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mib(loss_fn: Loss, emb: torch.Tensor, labels: torch.Tensor) -> float:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(loss_fn, emb, labels)
    changes = sorted(
        (event.time_range.start, event.cpu_memory_usage)
        if event.name == "[memory]"
        else (event.time_range.start, event.self_cpu_memory_usage)
        for event in prof.events()
    )
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours: Loss = FastAPLoss(num_bins=10)
    theirs: Loss = pml_losses.FastAPLoss(num_bins=10)
    print(f"FastAP forward+backward, d=128, float32, CPU, {args.threads} thread(s)\n")
    print(
        "| batch | echoseek ms | PML ms | time PML/ours | echoseek peak MiB | PML peak MiB |"
        " memory PML/ours | abs loss diff |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, per_class in ((256, 8), (1024, 16)):
        emb, labels = make_batch(n, 128, per_class)
        diff = abs(step(ours, emb, labels) - step(theirs, emb, labels))
        t_ours = median_seconds(ours, emb, labels, args.reps)
        t_theirs = median_seconds(theirs, emb, labels, args.reps)
        m_ours, m_theirs = peak_mib(ours, emb, labels), peak_mib(theirs, emb, labels)
        print(
            f"| {n} | {1e3 * t_ours:.1f} | {1e3 * t_theirs:.1f} | {t_theirs / t_ours:.1f}x "
            f"| {m_ours:.1f} | {m_theirs:.1f} | {m_theirs / m_ours:.1f}x | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
