"""Building blocks of the projection and prediction MLPs of the SSL methods."""

from __future__ import annotations

from torch import nn


def linear_bn_relu(in_dim: int, out_dim: int) -> list[nn.Module]:
    """``Linear (no bias) -> BatchNorm1d -> ReLU``, the hidden layer of every SSL projector."""
    return [nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim), nn.ReLU(inplace=True)]
