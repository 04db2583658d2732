"""Benchmark the self-supervised losses against peers and the methods' training steps.

Run: ``.venv/bin/python bench/bench_ssl.py`` (CPU, about a minute on 2 cores). Times are the
best of several runs, which is the most stable statistic on a shared machine.

Table 1 times forward+backward of each loss beside a peer implementation of the same formula
and reports the largest value difference: NT-Xent against pytorch-metric-learning's
``NTXentLoss``; Barlow Twins against the authors' pseudo-code (BatchNorm1d standardisation);
InstDisc NCE with one noise draw shared by the batch (ours) against one draw per sample
(the original implementation's NxMxD gather + bmm).

Table 2 times one optimizer step of every method on the same backbone and batch, SimSiam
being the baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.optim import Optimizer

from echoseek.losses import BarlowTwinsLoss, NCELoss, NTXentLoss
from echoseek.models import METHODS, SSLMethod, build_backbone, build_method

THREADS = 1  # one thread: stable timings on a shared 2-core machine
REPEATS = 5


def race(
    fns: list[Callable[[], torch.Tensor]], repeats: int = REPEATS
) -> list[tuple[float, torch.Tensor]]:
    """Best-of-``repeats`` milliseconds and last value of each fn, run round-robin.

    One warm-up call each; the rounds interleave the candidates so that load from other
    processes hits them alike.
    """
    values = [fn() for fn in fns]
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            values[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return [(1000 * b, v) for b, v in zip(best, values, strict=True)]


def forward_backward(loss_fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    for x in inputs:
        x.grad = None
    loss = loss_fn(*inputs)
    loss.backward()
    return loss.detach()


def barlow_pseudocode(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """Zbontar et al. Algorithm 1: c = bn(z1).T @ bn(z2) / N."""
    n, d = z1.shape
    bn = torch.nn.BatchNorm1d(d, affine=False).to(z1.dtype)
    c = bn(z1).T @ bn(z2) / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


def nce_per_sample_draw(
    f: torch.Tensor, bank: torch.Tensor, index: torch.Tensor, noise: torch.Tensor, tau: float
) -> torch.Tensor:
    """NCE with m noise rows per sample, gathered as NxMxD (as lemniscate.pytorch does)."""
    n_data, m = bank.shape[0], noise.shape[1]
    idx = torch.cat([index[:, None], noise], dim=1)  # Nx(M+1)
    weights = bank[idx]  # Nx(M+1)xD
    scores = torch.bmm(weights, f[:, :, None]).squeeze(2) / tau  # Nx(M+1)
    z = n_data * scores.detach().exp().mean()
    p = scores.exp() / z
    h = p / (p + m / n_data)
    return (-h[:, 0].log() - (1 - h[:, 1:]).log().sum(dim=1)).mean()


def loss_rows() -> list[tuple[str, str, int, float, float, float]]:
    g = torch.Generator().manual_seed(0)
    rows = []
    pml = __import__("pytorch_metric_learning.losses", fromlist=["NTXentLoss"])

    n, d = 128, 128  # the peer builds an N x N² pair mask: its cost grows as N³
    z1 = torch.randn(n, d, generator=g, requires_grad=True)
    z2 = torch.randn(n, d, generator=g, requires_grad=True)
    labels = torch.arange(n).repeat(2)
    ours = NTXentLoss(temperature=0.1)
    peer = pml.NTXentLoss(temperature=0.1)
    (t_ours, v_ours), (t_peer, v_peer) = race(
        [
            lambda: forward_backward(ours, z1, z2),
            lambda: forward_backward(lambda a, b: peer(torch.cat([a, b]), labels), z1, z2),
        ]
    )
    rows.append(("NT-Xent", "pytorch-metric-learning", n, t_ours, t_peer, _diff(v_ours, v_peer)))

    n, d = 256, 2048
    z1 = torch.randn(n, d, generator=g, requires_grad=True)
    z2 = torch.randn(n, d, generator=g, requires_grad=True)
    (t_ours, v_ours), (t_peer, v_peer) = race(
        [
            lambda: forward_backward(BarlowTwinsLoss(), z1, z2),
            lambda: forward_backward(barlow_pseudocode, z1, z2),
        ]
    )
    rows.append(("Barlow Twins", "paper pseudo-code", n, t_ours, t_peer, _diff(v_ours, v_peer)))

    n, m, d, n_data, tau = 128, 4096, 128, 50_000, 0.07
    bank = F.normalize(torch.randn(n_data, d, generator=g))
    f = F.normalize(torch.randn(n, d, generator=g)).requires_grad_(True)
    index = torch.randint(n_data, (n,), generator=g)
    shared = torch.randint(n_data, (m,), generator=g)
    per_sample = shared.expand(n, m)  # same rows: the two values must agree exactly
    nce = NCELoss(n_data, tau)

    def ours_nce(x: torch.Tensor) -> torch.Tensor:
        positive = (x * bank[index]).sum(dim=1)
        negative = x @ bank[shared].T
        z = n_data * torch.cat([positive, negative.reshape(-1)]).detach().div(tau).exp().mean()
        return nce(positive, negative, z)

    (t_ours, v_ours), (t_peer, v_peer) = race(
        [
            lambda: forward_backward(ours_nce, f),
            lambda: forward_backward(
                lambda x: nce_per_sample_draw(x, bank, index, per_sample, tau), f
            ),
        ]
    )
    rows.append(
        ("InstDisc NCE m=4096", "per-sample draw (bmm)", n, t_ours, t_peer, _diff(v_ours, v_peer))
    )
    return rows


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return abs(a.item() - b.item()) / max(abs(b.item()), 1e-12)


METHOD_KWARGS: dict[str, dict[str, int]] = {
    "simsiam": {"dim": 2048},
    "byol": {"dim": 256, "hidden": 4096},
    "barlow": {"dim": 2048},
    "simclr": {"dim": 128},
    "instdisc": {"num_data": 10_000, "dim": 128, "num_negatives": 4096},
}


def method_rows(batch: int, size: int) -> list[tuple[str, int, float]]:
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(batch, 1, size, size, generator=g)
    x2 = torch.randn(batch, 1, size, size, generator=g)
    index = torch.randint(10_000, (batch,), generator=g)
    steps: list[Callable[[], torch.Tensor]] = []
    params: list[int] = []
    for name in METHODS:
        torch.manual_seed(0)
        backbone = build_backbone("resnet18", in_channels=1, small_stem=True)
        method = build_method(name, backbone, **METHOD_KWARGS[name])
        optimizer = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)

        def step(method: SSLMethod = method, optimizer: Optimizer = optimizer) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = method(x1, x2, index=index)
            loss.backward()
            optimizer.step()
            method.on_step_end()
            return loss.detach()

        steps.append(step)
        params.append(sum(p.numel() for p in method.parameters() if p.requires_grad))
    results = race(steps, repeats=3)
    assert all(math.isfinite(loss.item()) for _, loss in results)
    return [(n, p, ms) for n, p, (ms, _) in zip(METHODS, params, results, strict=True)]


def main() -> None:
    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, {THREADS} threads, best of {REPEATS} (losses) / 3 (steps)\n")
    print("| loss | peer | batch | ours ms | peer ms | peer/ours | rel. value diff |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, peer, n, t_ours, t_peer, diff in loss_rows():
        ratio = t_peer / t_ours
        print(
            f"| {name} | {peer} | {n} | {t_ours:.2f} | {t_peer:.2f} | {ratio:.2f}x | {diff:.1e} |"
        )
    batch, size = 16, 32
    print(f"\nOne optimizer step, ResNet-18 small stem, {batch}x1x{size}x{size} per view, CPU\n")
    print("| method | trainable params | ms/step | vs simsiam |")
    print("|---|---:|---:|---:|")
    rows = method_rows(batch, size)
    base = rows[0][2]
    for name, params, ms in rows:
        print(f"| {name} | {params / 1e6:.1f} M | {ms:.0f} | {ms / base:.2f}x |")


if __name__ == "__main__":
    main()
