"""NTXentLoss against a hand-written loop over the 2N views (float64) and a peer library."""

from __future__ import annotations

import math

import pytest
import torch

from echoseek.losses import NTXentLoss


def naive_ntxent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    views = z1.tolist() + z2.tolist()
    n = len(z1)

    def sim(u: list[float], v: list[float]) -> float:
        dot = sum(a * b for a, b in zip(u, v, strict=True))
        return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v))) / tau

    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denominator = sum(math.exp(sim(views[i], views[k])) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(sim(views[i], views[j])) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize(("n", "tau"), [(1, 0.1), (3, 0.1), (8, 0.5), (5, 1.0)])
def test_matches_naive_loop(n: int, tau: float) -> None:
    g = torch.Generator().manual_seed(n)
    z1, z2 = (torch.randn(n, 4, generator=g, dtype=torch.float64) for _ in range(2))
    got = NTXentLoss(temperature=tau)(z1, z2).item()
    assert got == pytest.approx(naive_ntxent(z1, z2, tau), rel=1e-10)


def test_agrees_with_pytorch_metric_learning() -> None:
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    g = torch.Generator().manual_seed(7)
    z1, z2 = (torch.randn(6, 8, generator=g, dtype=torch.float64) for _ in range(2))
    labels = torch.arange(6).repeat(2)
    peer = losses.NTXentLoss(temperature=0.2)(torch.cat([z1, z2]), labels)
    assert NTXentLoss(temperature=0.2)(z1, z2).item() == pytest.approx(peer.item(), rel=1e-8)


def test_gradients_finite_at_low_temperature() -> None:
    g = torch.Generator().manual_seed(4)
    z1, z2 = (torch.randn(4, 3, generator=g, requires_grad=True) for _ in range(2))
    loss = NTXentLoss(temperature=0.01)(z1, z2)
    loss.backward()
    assert torch.isfinite(loss)
    assert z1.grad is not None and torch.isfinite(z1.grad).all()


def test_rejects_non_positive_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
