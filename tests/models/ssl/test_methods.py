"""Self-supervised methods: the shared interface, SimSiam's stop-gradient, BYOL's EMA target."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from echoseek.errors import ConfigError
from echoseek.losses import SimSiamLoss
from echoseek.models import BYOL, METHODS, SimSiam, SSLMethod, build_backbone, build_method

SMALL: dict[str, dict[str, Any]] = {
    "simsiam": {"dim": 32},
    "byol": {"dim": 16, "hidden": 32},
    "barlow": {"dim": 32},
    "simclr": {"dim": 16},
    "instdisc": {"num_data": 20, "dim": 16, "num_negatives": 8},
}


def tiny_backbone(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_backbone("resnet18", in_channels=1, small_stem=True)


def views(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randn(n, 1, 16, 16, generator=g)


def test_registry_names() -> None:
    assert set(METHODS) == {"simsiam", "byol", "barlow", "simclr", "instdisc"}
    assert all(issubclass(cls, SSLMethod) for cls in METHODS.values())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_and_embeds(name: str) -> None:
    method = build_method(name, tiny_backbone(), **SMALL[name])
    x1, x2 = views()
    loss = method(x1, x2, index=torch.arange(4))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grad = method.backbone.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    method.on_step_end()
    assert method.embed(x1).shape == (4, 512)
    assert method.needs_index == (name == "instdisc")


def test_unknown_method_or_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="method: unknown 'moco'"):
        build_method("moco", tiny_backbone())
    with pytest.raises(ConfigError, match=r"method 'simsiam'.*temperature"):
        build_method("simsiam", tiny_backbone(), temperature=0.1)


def test_simsiam_architecture_follows_paper() -> None:
    method = SimSiam(tiny_backbone(), dim=64)
    last_bn = method.projector[-1]
    assert isinstance(last_bn, nn.BatchNorm1d) and not last_bn.affine
    assert [m.out_features for m in method.predictor if isinstance(m, nn.Linear)] == [16, 64]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in method.predictor[-1:])


def test_simsiam_targets_are_detached() -> None:
    p1, p2, z1, z2 = SimSiam(tiny_backbone(), dim=32).predict(*views())
    assert p1.requires_grad and p2.requires_grad
    assert not z1.requires_grad and not z2.requires_grad


def test_simsiam_stop_gradient_blocks_the_target_branch() -> None:
    """z gets gradient only through its own prediction p = h(z), never as the other's target."""
    method = SimSiam(tiny_backbone(), dim=32)
    zs: list[torch.Tensor] = []
    ps: list[torch.Tensor] = []

    def keep(store: list[torch.Tensor]) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            output.retain_grad()
            store.append(output)

        return hook

    method.projector.register_forward_hook(keep(zs))
    method.predictor.register_forward_hook(keep(ps))
    method(*views()).backward(retain_graph=True)
    z_grads = [z.grad.clone() for z in zs if z.grad is not None]
    p_grads = [p.grad.clone() for p in ps if p.grad is not None]
    assert len(z_grads) == len(p_grads) == 2
    for z, p, z_grad, p_grad in zip(zs, ps, z_grads, p_grads, strict=True):
        (via_prediction,) = torch.autograd.grad(p, z, grad_outputs=p_grad, retain_graph=True)
        torch.testing.assert_close(z_grad, via_prediction)
    # without the stop-gradient z1 would also get the target term: the check above would fail
    (leak,) = torch.autograd.grad(SimSiamLoss()(ps[0], ps[1], zs[0], zs[1]), zs[0])
    assert not torch.allclose(leak, z_grads[0])


def byol_with_moved_online(momentum: float = 0.9, total_steps: int | None = None) -> BYOL:
    method = BYOL(tiny_backbone(), dim=16, hidden=32, momentum=momentum, total_steps=total_steps)
    method(*views()).backward()
    torch.optim.SGD(method.parameters(), lr=0.5).step()
    return method


def test_byol_target_starts_as_copy_and_gets_no_gradient() -> None:
    method = BYOL(tiny_backbone(), dim=16, hidden=32)
    pairs = zip(method.projector.parameters(), method.target_projector.parameters(), strict=True)
    for online, target in pairs:
        torch.testing.assert_close(online, target)
    method(*views()).backward()
    assert all(p.grad is None for p in method.target_backbone.parameters())
    assert all(p.grad is None for p in method.target_projector.parameters())


def test_byol_ema_moves_target_by_the_formula() -> None:
    method = byol_with_moved_online(momentum=0.9)
    pairs = [(method.backbone, method.target_backbone), (method.projector, method.target_projector)]
    before = [[t.detach().clone() for t in target.parameters()] for _, target in pairs]
    method.on_step_end()
    for (online, target), old in zip(pairs, before, strict=True):
        for theta, xi, xi_old in zip(online.parameters(), target.parameters(), old, strict=True):
            torch.testing.assert_close(xi, 0.9 * xi_old + 0.1 * theta)
    after = method.target_projector.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before[1], after, strict=True))
    assert int(method.step) == 1
    buffers = zip(method.backbone.buffers(), method.target_backbone.buffers(), strict=True)
    for b_online, b_target in buffers:
        torch.testing.assert_close(b_target, b_online)


@pytest.mark.parametrize(("step", "want"), [(0, 0.99), (5, 0.995), (10, 1.0), (20, 1.0)])
def test_byol_cosine_momentum_schedule(step: int, want: float) -> None:
    method = BYOL(tiny_backbone(), dim=8, hidden=8, momentum=0.99, total_steps=10)
    method.step.fill_(step)
    assert method.current_momentum() == pytest.approx(want)
    tau = 1 - (1 - 0.99) * (math.cos(math.pi * min(step / 10, 1)) + 1) / 2
    assert method.current_momentum() == pytest.approx(tau)


def test_byol_constant_momentum_without_schedule() -> None:
    method = BYOL(tiny_backbone(), dim=8, hidden=8, momentum=0.97)
    method.step.fill_(1000)
    assert method.current_momentum() == 0.97
