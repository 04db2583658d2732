"""BYOLLoss against a hand-written per-sample loop (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from echoseek.losses import BYOLLoss


def naive_byol(q1: torch.Tensor, q2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> float:
    def l(q: torch.Tensor, z: torch.Tensor) -> float:  # noqa: E743 - the paper's name
        total = 0.0
        for qn, zn in zip(q.tolist(), z.tolist(), strict=True):
            nq = math.sqrt(sum(a * a for a in qn))
            nz = math.sqrt(sum(b * b for b in zn))
            total += sum((a / nq - b / nz) ** 2 for a, b in zip(qn, zn, strict=True))
        return total / len(q)

    return l(q1, z2) + l(q2, z1)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_matches_naive_loop(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    q1, q2, z1, z2 = (torch.randn(n, 5, generator=g, dtype=torch.float64) for _ in range(4))
    assert BYOLLoss()(q1, q2, z1, z2).item() == pytest.approx(naive_byol(q1, q2, z1, z2))


def test_bounds() -> None:
    z = torch.randn(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert BYOLLoss()(z, z, 2 * z, 2 * z).item() == pytest.approx(0.0, abs=1e-12)
    assert BYOLLoss()(-z, -z, z, z).item() == pytest.approx(8.0)


def test_gradients_finite() -> None:
    g = torch.Generator().manual_seed(2)
    q1, q2 = (torch.randn(4, 3, generator=g, requires_grad=True) for _ in range(2))
    z1, z2 = (torch.randn(4, 3, generator=g) for _ in range(2))
    BYOLLoss()(q1, q2, z1, z2).backward()
    assert q1.grad is not None and torch.isfinite(q1.grad).all() and q1.grad.abs().sum() > 0
