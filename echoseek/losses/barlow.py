"""Barlow Twins redundancy-reduction loss (Zbontar et al., ICML 2021)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss (Zbontar et al. 2021, Eq. 1-2).

    ``L = Σ_i (1 - C_ii)² + λ Σ_i Σ_{j≠i} C_ij²`` where ``C`` is the DxD cross-correlation
    of the two views' embeddings over the batch::

        C_ij = Σ_b a_bi c_bj / (sqrt(Σ_b a_bi²) sqrt(Σ_b c_bj²))

    with ``a = z1 - mean_b z1`` and ``c = z2 - mean_b z2`` (each unit centred over the batch).
    The paper's default ``λ = 5e-3``. ``eps`` only guards against a constant unit.
    :meth:`objective` is ``L`` as a function of ``C``, for a ``C`` computed elsewhere (over
    the global batch of every DDP rank, :class:`~echoseek.losses.GlobalBarlowTwinsLoss`).
    """

    def __init__(self, lambd: float = 5e-3, eps: float = 1e-12) -> None:
        super().__init__()
        self.lambd = lambd
        self.eps = eps

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """z1, z2: NxD embeddings of the two views; returns a scalar."""
        return self.objective(cross_correlation(z1, z2, self.eps))  # C: DxD

    def objective(self, c: torch.Tensor) -> torch.Tensor:
        """``L`` of the DxD cross-correlation matrix ``c``; returns a scalar."""
        on_diag = (1.0 - torch.diagonal(c)).pow(2).sum()
        off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return on_diag + self.lambd * off_diag


def _this_process(partial_sum: torch.Tensor) -> torch.Tensor:
    return partial_sum


def cross_correlation(
    z1: torch.Tensor,
    z2: torch.Tensor,
    eps: float = 1e-12,
    sum_ranks: Callable[[torch.Tensor], torch.Tensor] = _this_process,
) -> torch.Tensor:
    """The DxD correlation matrix between the units of z1 and z2 (NxD each) over the batch.

    Every statistic over the batch (the count, the means, the norms and ``C`` itself) is a
    sum over its rows. ``sum_ranks`` completes such a partial sum when the batch is split over
    processes: the identity (the default) when this process holds the whole batch,
    :func:`~echoseek.losses.distributed.all_reduce_sum` for the global batch of every DDP rank.
    """
    d = z1.shape[1]
    z = torch.cat([z1, z2], dim=1)  # Nx2D: the units of both views
    n = sum_ranks(z.new_tensor(float(z.shape[0])))
    z = z - sum_ranks(z.sum(dim=0)) / n  # Nx2D, centred
    z = z / sum_ranks(z.pow(2).sum(dim=0)).clamp_min(eps * eps).sqrt()  # unit norm per unit
    a, c = z.split(d, dim=1)  # NxD each
    return sum_ranks(a.T @ c)  # DxD
