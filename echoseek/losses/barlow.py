"""Barlow Twins redundancy-reduction loss (Zbontar et al., ICML 2021)."""

from __future__ import annotations

import torch
from torch import nn


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss (Zbontar et al. 2021, Eq. 1-2).

    ``L = Σ_i (1 - C_ii)² + λ Σ_i Σ_{j≠i} C_ij²`` where ``C`` is the DxD cross-correlation
    of the two views' embeddings over the batch::

        C_ij = Σ_b a_bi c_bj / (sqrt(Σ_b a_bi²) sqrt(Σ_b c_bj²))

    with ``a = z1 - mean_b z1`` and ``c = z2 - mean_b z2`` (each unit centred over the batch).
    The paper's default ``λ = 5e-3``. ``eps`` only guards against a constant unit.
    """

    def __init__(self, lambd: float = 5e-3, eps: float = 1e-12) -> None:
        super().__init__()
        self.lambd = lambd
        self.eps = eps

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """z1, z2: NxD embeddings of the two views; returns a scalar."""
        c = cross_correlation(z1, z2, self.eps)  # DxD
        on_diag = (1.0 - torch.diagonal(c)).pow(2).sum()
        off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return on_diag + self.lambd * off_diag


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The DxD correlation matrix between the units of z1 and z2 (NxD each) over the batch."""
    a = z1 - z1.mean(dim=0)  # NxD
    c = z2 - z2.mean(dim=0)  # NxD
    a = a / a.norm(dim=0).clamp_min(eps)
    c = c / c.norm(dim=0).clamp_min(eps)
    return a.T @ c  # DxD
