"""Non-parametric instance discrimination (Wu, Xiong, Yu & Lin, CVPR 2018)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from echoseek.errors import InputError
from echoseek.losses.distributed import world_size
from echoseek.losses.instdisc import NCELoss, estimate_partition
from echoseek.models.backbones import ResNetBackbone
from echoseek.models.ssl.base import SSLMethod
from echoseek.models.ssl.memory_bank import MemoryBank, gather_across_ranks


class InstDisc(SSLMethod):
    """Instance discrimination: every image is its own class, held in a memory bank.

    ``f = normalize(W backbone(x))`` (128-d) is scored against its own bank row ``v_i`` and m
    noise rows drawn uniformly; the loss is NCE (:class:`~echoseek.losses.instdisc.NCELoss`)
    with the partition ``Z`` estimated once from the first training batch (§3.2), plus the
    optional proximal term ``λ ‖f_i - v_i‖²`` (§3.3). After each optimizer step
    :meth:`on_step_end` moves the bank rows of the step's samples towards their features,
    ``v_i <- normalize(μ v_i + (1 - μ) f_i)``, gathering them from every DDP rank first.

    The m noise rows are shared by the batch (one draw per step): the same estimator as one draw
    per sample, with an NxM score matrix instead of NxMxD gathered vectors.

    Unlike the other methods it needs ``index`` (the dataset row of each sample) in
    :meth:`forward`; ``needs_index`` is True so a training loop can tell.

    Args:
        backbone: image -> NxF features.
        num_data: ``n``, the number of training instances (bank rows).
        dim: embedding size (128 in the paper).
        num_negatives: ``m`` (4096 in the paper), capped at ``n``.
        temperature: ``τ`` (0.07).
        bank_momentum: ``μ`` of the bank update (0.5).
        proximal: ``λ`` of the proximal regulariser (0 disables it; the paper uses 30-50).
        both_views: also score the second view (loss averaged, bank updated with the mean).
        seed: seed of the bank initialisation (identical on every rank).
    """

    needs_index = True
    partition: torch.Tensor

    def __init__(
        self,
        backbone: ResNetBackbone,
        num_data: int,
        dim: int = 128,
        num_negatives: int = 4096,
        temperature: float = 0.07,
        bank_momentum: float = 0.5,
        proximal: float = 0.0,
        both_views: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(backbone)
        self.embedding = nn.Linear(backbone.feature_dim, dim)
        self.bank = MemoryBank(num_data, dim, seed=seed)
        self.criterion = NCELoss(num_data, temperature)
        self.num_negatives = min(num_negatives, num_data)
        self.bank_momentum = bank_momentum
        self.proximal = proximal
        self.both_views = both_views
        self.register_buffer("partition", torch.tensor(-1.0))  # Z; negative until estimated
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        index: torch.Tensor | None = None,
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x1, x2: NxCxHxW views; index: N dataset rows; negatives: optional M bank rows.

        ``negatives`` fixes the noise samples (tests); by default m rows are drawn uniformly.
        """
        if index is None:
            raise ValueError("InstDisc.forward needs index=, the dataset row of each sample")
        self._check_index(index)
        views = [self.project(x1)] + ([self.project(x2)] if self.both_views else [])  # NxD each
        if negatives is None:
            negatives = self.bank.sample(self.num_negatives)
        v_pos = self.bank.vectors[index]  # NxD
        v_neg = self.bank.vectors[negatives]  # MxD
        losses = [self._view_loss(f, v_pos, v_neg) for f in views]
        if self.training:
            mean_feature = torch.stack(views).mean(dim=0).detach()  # NxD
            self._pending.append((index.detach(), mean_feature))
        return torch.stack(losses).mean()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x: NxCxHxW -> NxD unit-length embedding ``f``."""
        return F.normalize(self.embedding(self.backbone(x)), dim=1)

    @torch.no_grad()
    def on_step_end(self) -> None:
        """Update the bank rows of every sample seen since the last step, on every rank."""
        if not self._pending:
            return
        index = torch.cat([i for i, _ in self._pending])
        features = torch.cat([f for _, f in self._pending])
        self._pending = []
        index, features = gather_across_ranks(index, features)
        self.bank.update(index, features, momentum=self.bank_momentum)

    def _view_loss(self, f: torch.Tensor, v_pos: torch.Tensor, v_neg: torch.Tensor) -> torch.Tensor:
        positive = (f * v_pos).sum(dim=1)  # N
        negative = f @ v_neg.T  # NxM
        if self.partition.item() <= 0:
            self._estimate_partition(positive, negative)
        loss = self.criterion(positive, negative, self.partition)
        if self.proximal > 0:
            loss = loss + self.proximal * (f - v_pos).pow(2).sum(dim=1).mean()
        return loss

    @torch.no_grad()
    def _estimate_partition(self, positive: torch.Tensor, negative: torch.Tensor) -> None:
        z = estimate_partition(positive, negative, self.bank.size, self.criterion.temperature)
        self.partition.copy_(mean_across_ranks(z))

    def _check_index(self, index: torch.Tensor) -> None:
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.bank.size):
            raise InputError(
                f"index: sample rows must lie in [0, {self.bank.size}) (num_data), "
                f"got {int(index.min())}..{int(index.max())}"
            )


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over DDP ranks (itself when not distributed)."""
    world = world_size()
    if world == 1:
        return value
    total = value.clone()
    dist.all_reduce(total)
    return total / world
