"""SimSiam loss: symmetric negative cosine similarity (Chen & He, CVPR 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimSiamLoss(nn.Module):
    """Symmetric negative cosine similarity of SimSiam (Chen & He 2021, Eq. 1-2).

    ``L = D(p1, z2) / 2 + D(p2, z1) / 2`` with ``D(p, z) = -mean_n <p_n/‖p_n‖, z_n/‖z_n‖>``.

    The loss is the formula only: the stop-gradient on ``z`` belongs to the model, which
    returns ``p1, p2, z1.detach(), z2.detach()`` (see :class:`echoseek.models.SimSiam`). It lies
    in ``[-1, 1]``; identical, aligned views give ``-1``.
    """

    def forward(
        self, p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
    ) -> torch.Tensor:
        """All inputs NxD; returns a scalar."""
        return 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``D(p, z) = -mean_n cos(p_n, z_n)`` for NxD inputs."""
    return -F.cosine_similarity(p, z, dim=1).mean()
