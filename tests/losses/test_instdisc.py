"""NCELoss of instance discrimination against Wu et al.'s formulas computed by hand (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from echoseek.losses import NCELoss
from echoseek.losses.instdisc import estimate_partition


def naive_nce(
    features: list[list[float]],
    bank: list[list[float]],
    index: list[int],
    negatives: list[int],
    tau: float,
    z: float,
) -> float:
    n, m = len(bank), len(negatives)

    def h(f: list[float], v: list[float]) -> float:  # P(i|v) / (P(i|v) + m Pn)
        p = math.exp(sum(a * b for a, b in zip(f, v, strict=True)) / tau) / z
        return p / (p + m / n)

    total = 0.0
    for f, i in zip(features, index, strict=True):
        total += -math.log(h(f, bank[i]))
        total += -sum(math.log(1 - h(f, bank[j])) for j in negatives)
    return total / len(features)


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    x = torch.randn(rows, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(x, dim=1)


@pytest.mark.parametrize(("tau", "negatives"), [(0.07, [0, 3, 3, 5]), (0.5, [1, 2]), (1.0, [4])])
def test_matches_hand_formula_on_tiny_bank(tau: float, negatives: list[int]) -> None:
    bank, features = unit(6, 3, seed=0), unit(2, 3, seed=1)
    index = [2, 4]
    positive = (features * bank[index]).sum(dim=1)
    negative = features @ bank[negatives].T
    z = estimate_partition(positive, negative, num_data=6, temperature=tau)
    got = NCELoss(num_data=6, temperature=tau)(positive, negative, z).item()
    want = naive_nce(features.tolist(), bank.tolist(), index, negatives, tau, z.item())
    assert got == pytest.approx(want, rel=1e-10)


def test_partition_estimate_is_n_times_mean_exp() -> None:
    positive = torch.tensor([0.5, -0.2], dtype=torch.float64)
    negative = torch.tensor([[0.1, 0.3], [-0.4, 0.0]], dtype=torch.float64)
    scores = [0.5, -0.2, 0.1, 0.3, -0.4, 0.0]
    want = 10 * sum(math.exp(s / 0.1) for s in scores) / len(scores)
    got = estimate_partition(positive, negative, num_data=10, temperature=0.1)
    assert got.item() == pytest.approx(want)


def test_stable_and_finite_gradients_at_paper_temperature() -> None:
    features = unit(4, 8, seed=2).requires_grad_(True)
    bank = unit(50, 8, seed=3)
    positive = (features * bank[:4]).sum(dim=1)
    negative = features @ bank[10:40].T
    loss = NCELoss(num_data=50)(positive, negative, torch.tensor(1e-3, dtype=torch.float64))
    loss.backward()
    assert torch.isfinite(loss)
    assert features.grad is not None and torch.isfinite(features.grad).all()
