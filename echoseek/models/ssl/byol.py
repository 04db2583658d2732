"""BYOL: Bootstrap Your Own Latent (Grill et al., NeurIPS 2020)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from echoseek.losses.byol import BYOLLoss
from echoseek.models.backbones import ResNetBackbone
from echoseek.models.mlp import linear_bn_relu
from echoseek.models.ssl.base import SSLMethod


class BYOL(SSLMethod):
    """BYOL: online network (backbone, projector, predictor) regresses an EMA target network.

    The target ``ξ`` follows the online weights ``θ`` by ``ξ <- τ ξ + (1 - τ) θ`` after each
    step, with ``τ = 1 - (1 - τ_base) (cos(π k / K) + 1) / 2`` at step ``k`` of ``K`` when
    ``total_steps = K`` is given (the paper's schedule), else ``τ = τ_base``.

    Args:
        backbone: image -> NxF features.
        dim: projection size (256 in the paper).
        hidden: MLP hidden size (4096 in the paper).
        momentum: ``τ_base`` (0.996 in the paper).
        total_steps: ``K`` for the cosine increase of ``τ`` towards 1; None keeps it constant.
    """

    step: torch.Tensor

    def __init__(
        self,
        backbone: ResNetBackbone,
        dim: int = 256,
        hidden: int = 4096,
        momentum: float = 0.996,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(backbone)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.projector = nn.Sequential(
            *linear_bn_relu(backbone.feature_dim, hidden), nn.Linear(hidden, dim)
        )
        self.predictor = nn.Sequential(*linear_bn_relu(dim, hidden), nn.Linear(hidden, dim))
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.momentum = momentum
        self.total_steps = total_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.criterion = BYOLLoss()

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x1, x2: NxCxHxW views; ``index`` is ignored. Returns the scalar loss."""
        q1 = self.predictor(self.projector(self.backbone(x1)))  # NxD
        q2 = self.predictor(self.projector(self.backbone(x2)))  # NxD
        with torch.no_grad():
            z1 = self.target_projector(self.target_backbone(x1))  # NxD
            z2 = self.target_projector(self.target_backbone(x2))  # NxD
        return self.criterion(q1, q2, z1, z2)

    def current_momentum(self) -> float:
        """``τ`` at the current step (cosine schedule when ``total_steps`` is set)."""
        if self.total_steps is None:
            return self.momentum
        progress = min(int(self.step.item()) / max(self.total_steps, 1), 1.0)
        return 1.0 - (1.0 - self.momentum) * (math.cos(math.pi * progress) + 1.0) / 2.0

    @torch.no_grad()
    def on_step_end(self) -> None:
        """EMA-update the target network with the current ``τ``, then advance the step."""
        tau = self.current_momentum()
        ema_update(self.target_backbone, self.backbone, tau)
        ema_update(self.target_projector, self.projector, tau)
        self.step += 1


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``ξ <- τ ξ + (1 - τ) θ`` for parameters; buffers (BN statistics) are copied."""
    for xi, theta in zip(target.parameters(), online.parameters(), strict=True):
        xi.mul_(tau).add_(theta.detach(), alpha=1.0 - tau)
    for b_target, b_online in zip(target.buffers(), online.buffers(), strict=True):
        b_target.copy_(b_online)
