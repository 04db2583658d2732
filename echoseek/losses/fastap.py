"""FastAP: a differentiable average precision over histogram-binned distances.

Cakir, He, Xia, Kulis, Sclaroff, "Deep Metric Learning to Rank", CVPR 2019.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from echoseek.distances import distance_range, pairwise, resolve_params
from echoseek.errors import ConfigError, InputError


class FastAPLoss(nn.Module):
    """``1 − mean FastAP`` over the anchors of a batch that have at least one positive.

    Each anchor q ranks the other N − 1 embeddings of the batch (itself excluded) by the
    distance ``D(y=e_q, x=e_j)``. The distance range [lo, hi] on the unit sphere (see
    :func:`echoseek.distances.distance_range`) is covered by L + 1 bin centres
    ``z_l = lo + lΔ``, ``Δ = (hi − lo)/L``, L = ``num_bins`` (the authors' code and
    pytorch-metric-learning use the same L + 1 centres). With the triangular kernel
    ``δ(d, z_l) = max(0, 1 − |d − z_l|/Δ)``::

        h⁺_l = Σ_{j positive} δ(d_qj, z_l)      h_l = Σ_{j ≠ q} δ(d_qj, z_l)
        H⁺_l = Σ_{k ≤ l} h⁺_k                   H_l = Σ_{k ≤ l} h_k
        FastAP(q) = (1/N⁺_q) Σ_l h⁺_l H⁺_l / H_l          (terms with H_l = 0 are 0)
        loss = 1 − mean_{q : N⁺_q > 0} FastAP(q)

    Embeddings are expected L2-normalised (the bins span the range on the unit sphere); rows
    are normalised again here, which leaves normalised rows unchanged. The loss is computed in
    float32 (float64 inputs stay float64) with autocast disabled. A batch in which no anchor
    has a positive returns a zero that is still connected to the graph (zero gradients) and
    increments :attr:`num_empty_batches`.

    Each distance lands in two adjacent bins, so the histograms are built with two
    ``scatter_add`` calls over N×N tensors instead of an N×N×(L+1) kernel tensor.
    """

    def __init__(
        self, num_bins: int = 10, distance: str = "sqeuclidean", **distance_params: float
    ) -> None:
        super().__init__()
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ConfigError(f"FastAPLoss: num_bins must be a positive integer, got {num_bins!r}")
        self.num_bins = num_bins
        self.distance = distance
        self.distance_params = resolve_params(distance, **distance_params)
        self.num_empty_batches = 0
        self.last_batch_size = 0

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        _check_batch(embeddings, labels)
        self.last_batch_size = len(labels)  # what this call ranked against (global under DDP)
        labels = labels.to(embeddings.device)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            emb = embeddings if embeddings.dtype == torch.float64 else embeddings.float()
            emb = F.normalize(emb, dim=1)  # Nxd
            same = labels.unsqueeze(1) == labels.unsqueeze(0)  # NxN
            others = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)  # NxN
            positive = same & others  # NxN
            has_positive = positive.any(1)  # N
            if not bool(has_positive.any()):
                self.num_empty_batches += 1
                return emb.sum() * 0.0
            dist = pairwise(emb, emb, self.distance, **self.distance_params)  # NxN
            lo, hi = self._range(emb.shape[1])
            ap = fast_ap(dist, positive, others, lo, hi, self.num_bins)  # N
            return 1.0 - ap[has_positive].mean()

    def _range(self, dim: int) -> tuple[float, float]:
        lo, hi = distance_range(self.distance, dim, **self.distance_params)
        if hi <= lo:
            raise ConfigError(
                f"FastAPLoss: distance {self.distance!r} with {self.distance_params} is constant "
                f"on the unit sphere in dim {dim}; nothing to rank"
            )
        return lo, hi

    def extra_repr(self) -> str:
        params = "".join(f", {k}={v}" for k, v in self.distance_params.items())
        return f"num_bins={self.num_bins}, distance={self.distance!r}{params}"


def fast_ap(
    dist: Tensor, positive: Tensor, retrieved: Tensor, lo: float, hi: float, num_bins: int
) -> Tensor:
    """FastAP of each query row: dist Q×R, boolean masks Q×R (positives ⊆ retrieved) → Q.

    Distances are clamped to [lo, hi] (only rounding puts unit vectors outside). Queries with no
    positive get 0.
    """
    delta = (hi - lo) / num_bins
    pos = ((dist - lo) / delta).clamp(0.0, float(num_bins))  # QxR, in bin units
    left = pos.detach().floor().clamp_(max=num_bins - 1)  # QxR, lower neighbouring centre
    frac = pos - left  # QxR, weight of the upper centre; 1 − frac goes to the lower one
    # One scatter target per query with three histograms: negatives, positives, not retrieved.
    kind = torch.where(retrieved, positive.long(), 2)  # QxR in {0, 1, 2}
    index = left.long() + (num_bins + 1) * kind  # QxR
    hist = dist.new_zeros(dist.shape[0], 3 * (num_bins + 1))
    hist = hist.scatter_add(1, index, 1.0 - frac).scatter_add(1, index + 1, frac)
    hist = hist.view(-1, 3, num_bins + 1)  # Qx3x(L+1)
    h_pos = hist[:, 1]  # Qx(L+1)
    h_all = hist[:, 0] + h_pos  # Qx(L+1)
    cum_pos = h_pos.cumsum(1)  # Qx(L+1)
    cum_all = h_all.cumsum(1)  # Qx(L+1)
    # h⁺H⁺ ≤ H², so the ratio is bounded; where H = 0 the numerator is 0 as well.
    precision_mass = (h_pos * cum_pos / cum_all.clamp_min(torch.finfo(dist.dtype).tiny)).sum(1)
    num_pos = positive.sum(1).clamp_min(1).to(dist.dtype)  # Q
    return precision_mass / num_pos


def _check_batch(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.ndim != 2:
        raise InputError(f"embeddings: expected shape (N, dim), got {tuple(embeddings.shape)}")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise InputError(
            f"labels: expected shape ({embeddings.shape[0]},) to match embeddings, "
            f"got {tuple(labels.shape)}"
        )
