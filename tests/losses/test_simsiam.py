"""SimSiamLoss against a hand-written per-sample loop (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from echoseek.losses import SimSiamLoss


def naive_simsiam(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> float:
    def d(p: torch.Tensor, z: torch.Tensor) -> float:
        total = 0.0
        for pn, zn in zip(p.tolist(), z.tolist(), strict=True):
            dot = sum(a * b for a, b in zip(pn, zn, strict=True))
            norms = math.sqrt(sum(a * a for a in pn)) * math.sqrt(sum(b * b for b in zn))
            total += -dot / norms
        return total / len(p)

    return d(p1, z2) / 2 + d(p2, z1) / 2


@pytest.mark.parametrize("n", [1, 4, 9])
def test_matches_naive_loop(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    p1, p2, z1, z2 = (torch.randn(n, 6, generator=g, dtype=torch.float64) for _ in range(4))
    assert SimSiamLoss()(p1, p2, z1, z2).item() == pytest.approx(naive_simsiam(p1, p2, z1, z2))


def test_identical_views_give_minus_one() -> None:
    z = torch.randn(8, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert SimSiamLoss()(z, z, z, z).item() == pytest.approx(-1.0)
    # scale does not matter, direction does: opposite predictions give +1
    assert SimSiamLoss()(3 * z, 3 * z, z, z).item() == pytest.approx(-1.0)
    assert SimSiamLoss()(-z, -z, z, z).item() == pytest.approx(1.0)


def test_gradients_finite_and_only_through_inputs_given() -> None:
    g = torch.Generator().manual_seed(1)
    p1, p2 = (torch.randn(5, 4, generator=g, requires_grad=True) for _ in range(2))
    z1, z2 = (torch.randn(5, 4, generator=g) for _ in range(2))
    SimSiamLoss()(p1, p2, z1, z2).backward()
    assert p1.grad is not None and p2.grad is not None
    assert torch.isfinite(p1.grad).all() and torch.isfinite(p2.grad).all()
    assert p1.grad.abs().sum() > 0
