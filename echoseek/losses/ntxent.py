"""NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (Chen et al., ICML 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NTXentLoss(nn.Module):
    """NT-Xent over the 2N views of a batch (Chen et al. 2020, Eq. 1).

    With ``s_ik = cos(z_i, z_k) / τ`` over the 2N stacked views ``z = [z1; z2]``, the loss of
    view ``i`` whose positive is its other view ``j = (i + N) mod 2N`` is::

        ℓ(i, j) = -log( exp(s_ij) / Σ_{k≠i} exp(s_ik) )

    and ``L`` is the mean of ``ℓ`` over all 2N views (both orders of every pair). The paper's
    CIFAR/ImageNet temperatures are 0.1-0.5; the default here is 0.1. :meth:`anchor_losses` is
    the same ``ℓ`` for some of the views only, each still scored against all 2N: how
    :class:`~echoseek.losses.GlobalNTXentLoss` shares the global batch out among DDP ranks.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """z1, z2: NxD projections of the two views (row n of each is a positive pair)."""
        views = torch.cat([z1, z2])  # 2NxD
        every_view = torch.arange(views.shape[0], device=views.device)  # 2N
        return self.anchor_losses(views, every_view).mean()

    def anchor_losses(self, views: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """``ℓ(i, j)`` for every view index ``i`` in ``anchors`` (M), against all views.

        views: 2NxD stacked projections ``[z1; z2]``, so row ``i``'s positive is row
        ``(i + N) mod 2N``; anchors: M row indices into ``views``. Returns M losses.
        """
        two_n = views.shape[0]
        z = F.normalize(views, dim=1)  # 2NxD
        s = z[anchors] @ z.T / self.temperature  # Mx2N
        s = s.masked_fill(F.one_hot(anchors, two_n).bool(), float("-inf"))  # k ≠ i
        positive = (anchors + two_n // 2) % two_n  # M: i <-> i ± N
        return F.cross_entropy(s, positive, reduction="none")
