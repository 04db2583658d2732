"""SimSiam: Exploring Simple Siamese Representation Learning (Chen & He, CVPR 2021)."""

from __future__ import annotations

import torch
from torch import nn

from echoseek.losses.simsiam import SimSiamLoss
from echoseek.models.backbones import ResNetBackbone
from echoseek.models.mlp import linear_bn_relu
from echoseek.models.ssl.base import SSLMethod


class SimSiam(SSLMethod):
    """SimSiam: encoder f = backbone + projector, predictor h, stop-gradient on z.

    ``z = f(x)``, ``p = h(z)``, loss ``D(p1, stopgrad(z2))/2 + D(p2, stopgrad(z1))/2`` with
    ``D`` the negative cosine similarity (Alg. 1 of the paper).

    Args:
        backbone: image -> NxF features.
        dim: projector output ``d`` (2048 in the paper).
        pred_dim: predictor bottleneck (``d/4`` = 512 in the paper; default ``dim // 4``).
    """

    def __init__(
        self, backbone: ResNetBackbone, dim: int = 2048, pred_dim: int | None = None
    ) -> None:
        super().__init__(backbone)
        pred_dim = pred_dim or dim // 4
        feat = backbone.feature_dim
        # projector: Linear-BN-ReLU, Linear-BN-ReLU, Linear-BN (no affine), as in §4.1.
        self.projector = nn.Sequential(
            *linear_bn_relu(feat, dim),
            *linear_bn_relu(dim, dim),
            nn.Linear(dim, dim, bias=False),
            nn.BatchNorm1d(dim, affine=False),
        )
        # predictor: bottleneck d -> d/4 -> d, no BN on the output.
        self.predictor = nn.Sequential(*linear_bn_relu(dim, pred_dim), nn.Linear(pred_dim, dim))
        self.criterion = SimSiamLoss()

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x1, x2: NxCxHxW views; ``index`` is ignored. Returns the scalar loss."""
        p1, p2, z1, z2 = self.predict(x1, x2)
        return self.criterion(p1, p2, z1, z2)

    def predict(
        self, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predictions and stop-gradient targets ``p1, p2, z1.detach(), z2.detach()``."""
        z1 = self.projector(self.backbone(x1))  # NxD
        z2 = self.projector(self.backbone(x2))  # NxD
        p1 = self.predictor(z1)  # NxD
        p2 = self.predictor(z2)  # NxD
        return p1, p2, z1.detach(), z2.detach()
