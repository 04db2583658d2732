"""SimCLR: A Simple Framework for Contrastive Learning (Chen et al., ICML 2020)."""

from __future__ import annotations

import torch
from torch import nn

from echoseek.losses.distributed import GlobalNTXentLoss
from echoseek.losses.ntxent import NTXentLoss
from echoseek.models.backbones import ResNetBackbone
from echoseek.models.ssl.base import SSLMethod


class SimCLR(SSLMethod):
    """SimCLR: NT-Xent between the projections of two views, the other 2N-2 views as negatives.

    Projector ``g(h) = W2 ReLU(W1 h)`` (§2.1) with a 128-d output by default; loss
    :class:`~echoseek.losses.NTXentLoss` over the global batch, as the paper trains: under DDP
    every rank's views are negatives (:class:`~echoseek.losses.GlobalNTXentLoss`); in one
    process it is the plain loss.

    Args:
        backbone: image -> NxF features.
        dim: projection size (128 in the paper).
        hidden: projector hidden size (default the backbone's feature size, as in the paper).
        temperature: ``τ`` of NT-Xent.
    """

    def __init__(
        self,
        backbone: ResNetBackbone,
        dim: int = 128,
        hidden: int | None = None,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(backbone)
        hidden = hidden or backbone.feature_dim
        self.projector = nn.Sequential(
            nn.Linear(backbone.feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim)
        )
        self.criterion = GlobalNTXentLoss(NTXentLoss(temperature=temperature))

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x1, x2: NxCxHxW views; ``index`` is ignored. Returns the scalar loss."""
        z1 = self.projector(self.backbone(x1))  # NxD
        z2 = self.projector(self.backbone(x2))  # NxD
        return self.criterion(z1, z2)
