"""BarlowTwinsLoss against a hand-written loop over Eq. 1-2 of Zbontar et al. (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from echoseek.losses import BarlowTwinsLoss


def naive_barlow(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> float:
    a, b = z1.tolist(), z2.tolist()
    n, d = len(a), len(a[0])
    mean_a = [sum(a[k][i] for k in range(n)) / n for i in range(d)]
    mean_b = [sum(b[k][j] for k in range(n)) / n for j in range(d)]
    loss = 0.0
    for i in range(d):
        for j in range(d):
            num = sum((a[k][i] - mean_a[i]) * (b[k][j] - mean_b[j]) for k in range(n))
            den_a = math.sqrt(sum((a[k][i] - mean_a[i]) ** 2 for k in range(n)))
            den_b = math.sqrt(sum((b[k][j] - mean_b[j]) ** 2 for k in range(n)))
            c = num / (den_a * den_b)
            loss += (1 - c) ** 2 if i == j else lambd * c**2
    return loss


@pytest.mark.parametrize(("n", "d", "lambd"), [(2, 3, 5e-3), (5, 4, 5e-3), (8, 6, 0.5)])
def test_matches_naive_loop(n: int, d: int, lambd: float) -> None:
    g = torch.Generator().manual_seed(n * d)
    z1, z2 = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2))
    got = BarlowTwinsLoss(lambd=lambd)(z1, z2).item()
    assert got == pytest.approx(naive_barlow(z1, z2, lambd), rel=1e-10)


def test_perfectly_correlated_views_have_zero_on_diagonal_term() -> None:
    z = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # an affine map per unit keeps every correlation; off-diagonal terms remain
    loss_no_off = BarlowTwinsLoss(lambd=0.0)(z, 3 * z + 1)
    assert loss_no_off.item() == pytest.approx(0.0, abs=1e-12)


def test_gradients_finite() -> None:
    g = torch.Generator().manual_seed(3)
    z1, z2 = (torch.randn(6, 5, generator=g, requires_grad=True) for _ in range(2))
    BarlowTwinsLoss()(z1, z2).backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0
