"""BYOL loss: symmetric normalised mean squared error (Grill et al., NeurIPS 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BYOLLoss(nn.Module):
    """Symmetrised BYOL regression loss (Grill et al. 2020, Eq. 2 and ``L + L~``).

    ``l(q, z') = ‖q/‖q‖ - z'/‖z'‖‖² = 2 - 2 cos(q, z')`` averaged over the batch, and
    ``L = l(q1, z2') + l(q2, z1')`` where ``q`` are the online predictions and ``z'`` the
    target projections. The caller passes target projections computed without gradient.
    The loss lies in ``[0, 8]``; identical, aligned views give 0.
    """

    def forward(
        self, q1: torch.Tensor, q2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
    ) -> torch.Tensor:
        """All inputs NxD; returns a scalar."""
        return regression_loss(q1, z2) + regression_loss(q2, z1)


def regression_loss(q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``mean_n (2 - 2 cos(q_n, z_n))`` for NxD inputs."""
    return (2.0 - 2.0 * F.cosine_similarity(q, z, dim=1)).mean()
