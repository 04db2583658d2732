"""Reference tests for FastAPLoss: a naive loop implementation and pytorch-metric-learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from echoseek.errors import ConfigError, InputError
from echoseek.losses.fastap import FastAPLoss


def _batch(n: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit embeddings (float64) and labels in which the last two anchors have no positive."""
    gen = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(
        torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=1
    )
    labels = torch.randint(0, classes, (n,), generator=gen)
    labels[-2:] = torch.tensor([classes, classes + 1])  # singletons
    return emb, labels


# --- naive reference: per pair distances in numpy, explicit loops over anchors and bins --------


def _naive_distance(y: np.ndarray, x: np.ndarray, name: str) -> float:
    if name == "sqeuclidean":
        return float(sum((yi - xi) ** 2 for yi, xi in zip(y, x, strict=True)))
    if name == "cosine":
        return float(1.0 - np.dot(y, x) / (np.linalg.norm(y) * np.linalg.norm(x)))
    if name == "minkowski3":
        return float(sum(abs(yi - xi) ** 3 for yi, xi in zip(y, x, strict=True)) ** (1 / 3))
    beta = (np.dot(x, y) + 1e-4) / (np.dot(x, x) + 1e-4)
    r = y - beta * x
    yita = math.log(1.0 + np.abs(r).sum())
    if name == "soart3_yita":
        return yita
    return yita - math.log(1.0 + (np.abs(r) ** 4).sum() ** 0.25)  # soart3_gamma, p = 4


def _naive_upper(name: str, dim: int) -> float:
    """Range on the unit sphere (SOART3 with ‖r‖₂ ≤ 1, i.e. ignoring the O(ε²) excess)."""
    upper = {"sqeuclidean": 4.0, "cosine": 2.0, "minkowski3": 2.0}
    if name in upper:
        return upper[name]
    if name == "soart3_yita":
        return math.log(1.0 + math.sqrt(dim))
    return math.log((1.0 + math.sqrt(dim)) / (1.0 + dim**-0.25))


def naive_fastap_loss(emb: np.ndarray, labels: np.ndarray, name: str, num_bins: int) -> float:
    n = len(labels)
    delta = _naive_upper(name, emb.shape[1]) / num_bins
    centres = [k * delta for k in range(num_bins + 1)]
    scores = []
    for q in range(n):
        h_pos = [0.0] * (num_bins + 1)
        h_all = [0.0] * (num_bins + 1)
        for j in range(n):
            if j == q:
                continue
            d = _naive_distance(emb[q], emb[j], name)
            for k, z in enumerate(centres):
                weight = max(0.0, 1.0 - abs(d - z) / delta)
                h_all[k] += weight
                if labels[j] == labels[q]:
                    h_pos[k] += weight
        num_pos = sum(1 for j in range(n) if j != q and labels[j] == labels[q])
        if num_pos == 0:
            continue
        total, cum_pos, cum_all = 0.0, 0.0, 0.0
        for k in range(num_bins + 1):
            cum_pos += h_pos[k]
            cum_all += h_all[k]
            if cum_all > 0:
                total += h_pos[k] * cum_pos / cum_all
        scores.append(total / num_pos)
    return 1.0 - sum(scores) / len(scores)


NAIVE_DISTANCES = {
    "sqeuclidean": ("sqeuclidean", {}),
    "cosine": ("cosine", {}),
    "minkowski3": ("minkowski", {"p": 3.0}),
    "soart3_yita": ("soart3_yita", {}),
    "soart3_gamma": ("soart3_gamma", {"p": 4.0}),
}


@pytest.mark.parametrize("naive_name", list(NAIVE_DISTANCES))
@pytest.mark.parametrize(("n", "num_bins"), [(6, 1), (17, 4), (30, 10), (24, 25)])
def test_matches_naive_implementation(naive_name: str, n: int, num_bins: int) -> None:
    emb, labels = _batch(n, dim=8, classes=3, seed=n + num_bins)
    name, params = NAIVE_DISTANCES[naive_name]
    loss = FastAPLoss(num_bins=num_bins, distance=name, **params)(emb, labels)
    expected = naive_fastap_loss(emb.numpy(), labels.numpy(), naive_name, num_bins)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("n", "dim", "classes"), [(8, 4, 2), (64, 16, 8), (200, 32, 20)])
def test_matches_pytorch_metric_learning(
    dtype: torch.dtype, n: int, dim: int, classes: int
) -> None:
    """PML's FastAPLoss: squared L2 on normalised embeddings, 10 bins → 11 centres over [0, 4]."""
    emb, labels = _batch(n, dim, classes, seed=n)
    ours_in = emb.to(dtype).requires_grad_()
    pml_in = emb.to(dtype).requires_grad_()
    ours = FastAPLoss()(ours_in, labels)
    theirs = pml_losses.FastAPLoss(num_bins=10)(pml_in, labels)
    ours.backward()
    theirs.backward()
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert ours.item() == pytest.approx(theirs.item(), abs=tol)
    torch.testing.assert_close(ours_in.grad, pml_in.grad, atol=tol, rtol=tol)


@pytest.mark.parametrize(
    "name", ["sqeuclidean", "cosine", "minkowski", "soart3_yita", "soart3_gamma"]
)
def test_gradients_are_finite(name: str) -> None:
    emb, labels = _batch(40, 16, 4, seed=3)
    emb = torch.cat([emb, emb[:3]]).float().requires_grad_()  # duplicates: zero distances
    labels = torch.cat([labels, labels[:3]])
    loss = FastAPLoss(distance=name)(emb, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    assert emb.grad.abs().sum() > 0


def test_anchors_without_positives_are_excluded() -> None:
    emb, labels = _batch(20, 8, 3, seed=4)  # the last two anchors are singletons
    loss = FastAPLoss()(emb, labels).item()
    expected = naive_fastap_loss(emb.numpy(), labels.numpy(), "sqeuclidean", 10)
    assert loss == pytest.approx(expected, abs=1e-10)
    # Counting the two singletons as anchors with AP 0 would give 1 − (18/20)(1 − expected).
    assert loss != pytest.approx(1.0 - 18 / 20 * (1.0 - expected), abs=1e-3)


def test_batch_without_positives_returns_connected_zero_and_counts() -> None:
    loss_fn = FastAPLoss()
    emb = torch.nn.functional.normalize(
        torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=1
    )
    emb.requires_grad_()
    labels = torch.arange(5)
    loss = loss_fn(emb, labels)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert emb.grad is not None and torch.equal(emb.grad, torch.zeros_like(emb))
    loss_fn(emb, labels)
    assert loss_fn.num_empty_batches == 2


def test_perfectly_separated_clusters_give_zero_loss() -> None:
    gen = torch.Generator().manual_seed(5)
    centre = torch.nn.functional.normalize(torch.randn(1, 16, generator=gen), dim=1)
    noise = 1e-3 * torch.randn(12, 16, generator=gen)
    emb = torch.cat([centre.expand(6, -1), -centre.expand(6, -1)]) + noise
    labels = torch.tensor([0] * 6 + [1] * 6)
    assert FastAPLoss()(emb, labels).item() == pytest.approx(0.0, abs=1e-6)
    mixed = torch.tensor([0, 1] * 6)
    assert FastAPLoss()(emb, mixed).item() > 0.3


def test_computes_in_float32_under_autocast() -> None:
    emb, labels = _batch(32, 16, 4, seed=6)
    low = emb.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = FastAPLoss()(low, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(FastAPLoss()(low.float(), labels).item(), abs=1e-7)


def test_rows_are_normalised() -> None:
    emb, labels = _batch(16, 8, 3, seed=7)
    scale = torch.linspace(0.5, 3.0, 16, dtype=torch.float64).unsqueeze(1)
    assert FastAPLoss()(emb * scale, labels).item() == pytest.approx(
        FastAPLoss()(emb, labels).item(), abs=1e-12
    )


def test_bad_configuration_and_inputs() -> None:
    with pytest.raises(ConfigError, match="num_bins must be a positive integer"):
        FastAPLoss(num_bins=0)
    with pytest.raises(ConfigError, match="unknown name 'l2'"):
        FastAPLoss(distance="l2")
    with pytest.raises(ConfigError, match="p must be >= 1"):
        FastAPLoss(distance="soart3_gamma", p=0.5)
    emb, labels = _batch(8, 4, 2, seed=8)
    with pytest.raises(ConfigError, match="constant on the unit sphere"):
        FastAPLoss(distance="soart3_gamma", p=1.0)(emb, labels)
    with pytest.raises(InputError, match="labels: expected shape"):
        FastAPLoss()(emb, labels[:-1])
    with pytest.raises(InputError, match="embeddings: expected shape"):
        FastAPLoss()(emb[0], labels)
