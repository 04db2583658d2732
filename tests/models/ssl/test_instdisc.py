"""InstDisc: NCE against the memory bank, partition estimate, bank update, index checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from echoseek.errors import InputError
from echoseek.models import InstDisc, build_backbone


def make(num_data: int = 12, **kwargs: float | int | bool) -> InstDisc:
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", in_channels=1, small_stem=True)
    return InstDisc(backbone, num_data=num_data, dim=8, **kwargs)  # type: ignore[arg-type]


def views(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randn(n, 1, 16, 16, generator=g)


def test_forward_is_nce_of_wu_et_al_with_fixed_negatives() -> None:
    method = make(num_data=12, temperature=0.5)
    x1, x2 = views()
    index, negatives = torch.tensor([0, 5, 7, 11]), torch.tensor([1, 1, 3, 9, 10])
    loss = method(x1, x2, index=index, negatives=negatives)
    with torch.no_grad():
        f = method.project(x1)
        bank = method.bank.vectors
        pos = (f * bank[index]).sum(dim=1) / 0.5  # N
        neg = f @ bank[negatives].T / 0.5  # NxM
        z = 12 * torch.cat([pos.exp(), neg.exp().reshape(-1)]).mean()
        m, pn = 5, 1 / 12
        h_pos = (pos.exp() / z) / (pos.exp() / z + m * pn)
        h_neg = (neg.exp() / z) / (neg.exp() / z + m * pn)
        want = (-h_pos.log() - (1 - h_neg).log().sum(dim=1)).mean()
    torch.testing.assert_close(loss.detach(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(method.partition, z)


def test_partition_is_estimated_once() -> None:
    method = make()
    x1, x2 = views()
    method(x1, x2, index=torch.arange(4))
    first = method.partition.clone()
    assert first > 0
    method(x2, x1, index=torch.arange(4, 8))
    assert torch.equal(method.partition, first)


def test_bank_update_after_step_follows_the_formula() -> None:
    method = make(num_data=10, bank_momentum=0.5)
    x1, x2 = views()
    index = torch.tensor([2, 3, 8, 9])
    old = method.bank.vectors.clone()
    method(x1, x2, index=index)
    with torch.no_grad():
        f = method.project(x1)
    torch.testing.assert_close(method.bank.vectors, old)  # nothing moves before the step
    method.on_step_end()
    want = F.normalize(0.5 * old[index] + 0.5 * f, dim=1)
    torch.testing.assert_close(method.bank.vectors[index], want, rtol=1e-5, atol=1e-6)
    untouched = torch.tensor([0, 1, 4, 5, 6, 7])
    torch.testing.assert_close(method.bank.vectors[untouched], old[untouched])


def test_eval_forward_does_not_touch_the_bank() -> None:
    method = make().eval()
    old = method.bank.vectors.clone()
    method(*views(), index=torch.arange(4))
    method.on_step_end()
    assert torch.equal(method.bank.vectors, old)


def test_proximal_term_adds_lambda_squared_distance() -> None:
    x1, x2 = views()
    index, negatives = torch.arange(4), torch.tensor([4, 5, 6])
    plain = make(proximal=0.0)(x1, x2, index=index, negatives=negatives)
    method = make(proximal=30.0)
    loss = method(x1, x2, index=index, negatives=negatives)
    with torch.no_grad():
        f = method.project(x1)
        term = 30.0 * (f - method.bank.vectors[index]).pow(2).sum(dim=1).mean()
    torch.testing.assert_close(loss.detach(), plain.detach() + term, rtol=1e-5, atol=1e-5)


def test_both_views_average_the_losses() -> None:
    x1, x2 = views()
    index, negatives = torch.arange(4), torch.tensor([4, 5, 6])
    method = make(both_views=True)
    loss = method(x1, x2, index=index, negatives=negatives)
    assert torch.isfinite(loss)
    method.on_step_end()
    assert method.bank.vectors[:4].norm(dim=1).sub(1).abs().max() < 1e-5


def test_index_is_required_and_checked() -> None:
    method = make(num_data=12)
    x1, x2 = views()
    with pytest.raises(ValueError, match="index"):
        method(x1, x2)
    with pytest.raises(InputError, match=r"index: .*\[0, 12\)"):
        method(x1, x2, index=torch.tensor([0, 1, 2, 12]))


def test_negatives_are_capped_by_bank_size() -> None:
    assert make(num_data=12, num_negatives=4096).num_negatives == 12
