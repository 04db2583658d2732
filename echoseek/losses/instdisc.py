"""NCE loss of non-parametric instance discrimination (Wu et al., CVPR 2018, §3.2).

Each image ``i`` is its own class, represented by a memory-bank vector ``v_i``. For the current
feature ``f`` of image ``i`` the non-parametric softmax ``P(i|f) = exp(v_i·f/τ) / Z`` is
approximated by noise-contrastive estimation against ``m`` noise samples drawn uniformly,
``P_n = 1/n``::

    h(i, v) = P(i|v) / (P(i|v) + m P_n)
    J_NCE   = -E_{P_d}[log h(i, v_i)] - m E_{P_n}[log(1 - h(i, v'))]

and the partition function is treated as a constant estimated once by Monte Carlo,
``Z ≈ n E_j[exp(v_j·f/τ)]``. With ``a = v·f/τ - log Z - log(m P_n)`` both terms are logistic
losses, ``-log h = softplus(-a)`` and ``-log(1 - h) = softplus(a)``, which is how they are
computed here (stable for any ``τ``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NCELoss(nn.Module):
    """``J_NCE`` of Wu et al. 2018 (Eq. 6-8) for one positive and m noise scores per sample.

    Args:
        num_data: ``n``, the number of instances (memory-bank rows); ``P_n = 1/n``.
        temperature: ``τ`` (0.07 in the paper).
    """

    def __init__(self, num_data: int, temperature: float = 0.07) -> None:
        super().__init__()
        if num_data < 1 or temperature <= 0:
            raise ValueError(
                f"need num_data >= 1 and temperature > 0, got {num_data}, {temperature}"
            )
        self.num_data = num_data
        self.temperature = temperature

    def forward(
        self, positive: torch.Tensor, negative: torch.Tensor, partition: torch.Tensor
    ) -> torch.Tensor:
        """positive: N dot products ``v_i·f_i``; negative: NxM ``v_j·f_i``; partition: ``Z``.

        Returns ``mean_i [-log h(i, v_i) - Σ_k log(1 - h(i, v_k'))]``, a scalar.
        """
        m = negative.shape[1]
        shift = torch.log(partition) + math.log(m / self.num_data)  # log Z + log(m P_n)
        a_pos = positive / self.temperature - shift  # N
        a_neg = negative / self.temperature - shift  # NxM
        return (F.softplus(-a_pos) + F.softplus(a_neg).sum(dim=1)).mean()


def estimate_partition(
    positive: torch.Tensor, negative: torch.Tensor, num_data: int, temperature: float
) -> torch.Tensor:
    """Monte Carlo ``Z ≈ n · mean(exp(v·f/τ))`` over every score of one batch (no gradient)."""
    scores = torch.cat([positive.detach().reshape(-1), negative.detach().reshape(-1)])
    return num_data * torch.exp(scores / temperature).mean()
