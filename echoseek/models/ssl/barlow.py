"""Barlow Twins: Self-Supervised Learning via Redundancy Reduction (Zbontar et al., ICML 2021)."""

from __future__ import annotations

import torch
from torch import nn

from echoseek.losses.barlow import BarlowTwinsLoss
from echoseek.losses.distributed import GlobalBarlowTwinsLoss
from echoseek.models.backbones import ResNetBackbone
from echoseek.models.mlp import linear_bn_relu
from echoseek.models.ssl.base import SSLMethod


class BarlowTwins(SSLMethod):
    """Barlow Twins: push the cross-correlation of the two views' projections to identity.

    Projector ``Linear-BN-ReLU, Linear-BN-ReLU, Linear`` (8192 units in the paper; 2048 by
    default here, which suits small data sets), loss :class:`~echoseek.losses.BarlowTwinsLoss`
    with the cross-correlation over the global batch: under DDP its statistics are summed over
    every rank (:class:`~echoseek.losses.GlobalBarlowTwinsLoss`), in one process it is the plain
    loss. The projector's BatchNorm stays per-rank unless the model is made ``SyncBatchNorm``.

    Args:
        backbone: image -> NxF features.
        dim: projector output size.
        hidden: projector hidden size (default ``dim``).
        lambd: off-diagonal weight ``λ`` (5e-3 in the paper).
    """

    def __init__(
        self,
        backbone: ResNetBackbone,
        dim: int = 2048,
        hidden: int | None = None,
        lambd: float = 5e-3,
    ) -> None:
        super().__init__(backbone)
        hidden = hidden or dim
        self.projector = nn.Sequential(
            *linear_bn_relu(backbone.feature_dim, hidden),
            *linear_bn_relu(hidden, hidden),
            nn.Linear(hidden, dim, bias=False),
        )
        self.criterion = GlobalBarlowTwinsLoss(BarlowTwinsLoss(lambd=lambd))

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x1, x2: NxCxHxW views; ``index`` is ignored. Returns the scalar loss."""
        z1 = self.projector(self.backbone(x1))  # NxD
        z2 = self.projector(self.backbone(x2))  # NxD
        return self.criterion(z1, z2)
