"""NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (Chen et al., ICML 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NTXentLoss(nn.Module):
    """NT-Xent over the 2N views of a batch (Chen et al. 2020, Eq. 1).

    With ``s_ik = cos(z_i, z_k) / τ`` over the 2N stacked views ``z = [z1; z2]``, the loss of
    view ``i`` whose positive is its other view ``j`` is::

        ℓ(i, j) = -log( exp(s_ij) / Σ_{k≠i} exp(s_ik) )

    and ``L`` is the mean of ``ℓ`` over all 2N views (both orders of every pair). The paper's
    CIFAR/ImageNet temperatures are 0.1-0.5; the default here is 0.1.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """z1, z2: NxD projections of the two views (row n of each is a positive pair)."""
        n = z1.shape[0]
        z = F.normalize(torch.cat([z1, z2]), dim=1)  # 2NxD
        s = z @ z.T / self.temperature  # 2Nx2N
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        s = s.masked_fill(self_mask, float("-inf"))
        positive = (torch.arange(2 * n, device=z.device) + n) % (2 * n)  # 2N: i <-> i ± N
        return F.cross_entropy(s, positive)
