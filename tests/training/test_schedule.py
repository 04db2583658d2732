"""Learning-rate helpers against the closed forms written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from echoseek.errors import ConfigError
from echoseek.training import param_groups, scaled_lr, set_lr, unwrap_model, warmup_cosine


def test_scaled_lr_linear_rule() -> None:
    assert scaled_lr(0.05, 256) == pytest.approx(0.05)
    assert scaled_lr(0.05, 512) == pytest.approx(0.1)  # SimSiam: 0.05 x 512/256
    assert scaled_lr(0.1, 32 * 4, reference=64) == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="batch"):
        scaled_lr(0.05, 0)


def closed_form(step: int, total: int, warmup: int, final: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / (total - warmup))
    return final + (1 - final) * (1 + math.cos(math.pi * t)) / 2


@pytest.mark.parametrize("final", [0.0, 0.1])
def test_warmup_cosine_closed_form(final: float) -> None:
    total, warmup = 110, 10
    assert warmup_cosine(0, total, warmup, final) == pytest.approx(0.1)  # ~0 at the start
    assert warmup_cosine(4, total, warmup, final) == pytest.approx(0.5)
    assert warmup_cosine(9, total, warmup, final) == pytest.approx(1.0)  # end of warmup
    assert warmup_cosine(10, total, warmup, final) == pytest.approx(1.0)
    assert warmup_cosine(60, total, warmup, final) == pytest.approx((1 + final) / 2)  # midpoint
    assert warmup_cosine(110, total, warmup, final) == pytest.approx(final)  # end
    assert warmup_cosine(500, total, warmup, final) == pytest.approx(final)
    for step in range(0, 120, 7):
        assert warmup_cosine(step, total, warmup, final) == pytest.approx(
            closed_form(step, total, warmup, final)
        )


def test_warmup_cosine_without_warmup_is_cosine() -> None:
    assert warmup_cosine(0, 100, 0) == pytest.approx(1.0)
    assert warmup_cosine(25, 100, 0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 0, 0), "total_steps"),
        ((0, 10, 10), "warmup_steps"),
        ((0, 10, -1), "warmup_steps"),
        ((-1, 10, 2), "step"),
    ],
)
def test_warmup_cosine_rejects_bad_arguments(args: tuple[int, int, int], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        warmup_cosine(*args)
    with pytest.raises(ConfigError, match="final_ratio"):
        warmup_cosine(0, 10, 2, final_ratio=1.5)


def ids(*params: nn.Parameter) -> set[int]:
    return {id(p) for p in params}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.predictor = nn.Linear(4, 4)


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the model is its only child, ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def test_param_groups_fixed_lr_and_no_decay() -> None:
    model = Tiny()
    groups = param_groups(
        Wrapper(model), fixed_lr_prefixes=("predictor",), weight_decay=1e-4, no_decay_bias_norm=True
    )
    by_flags = {(g["fixed_lr"], g["weight_decay"]): {id(p) for p in g["params"]} for g in groups}
    enc, bn, pred = model.encoder[0], model.encoder[1], model.predictor
    assert by_flags == {
        (False, 1e-4): ids(enc.weight),
        (False, 0.0): ids(enc.bias, bn.weight, bn.bias),
        (True, 1e-4): ids(pred.weight),
        (True, 0.0): ids(pred.bias),
    }
    assert sum(len(g["params"]) for g in param_groups(model)) == len(list(model.parameters()))


def test_set_lr_leaves_fixed_lr_groups_at_their_initial_lr() -> None:
    model = Tiny()
    optimizer = torch.optim.SGD(param_groups(model, fixed_lr_prefixes=("predictor",)), lr=0.05)
    set_lr(optimizer, 0.01)
    lrs = {g["fixed_lr"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {False: 0.01, True: 0.05}


def test_set_lr_scales_each_group_by_its_lr_scale() -> None:
    from echoseek.models.backbones import build_backbone
    from echoseek.models.finetune import build_finetune_model
    from echoseek.models.head import EmbeddingModel
    from echoseek.training.finetune import finetune_groups

    base = EmbeddingModel(build_backbone("resnet18", 1, True, "avg"))
    model = build_finetune_model(base, dim=8, hidden=16, trainable="last_stage")
    groups = finetune_groups(model, 0.1)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    head, layer4 = model.head.parameters(), model.backbone.layer4.parameters()
    assert [len(g["params"]) for g in groups] == [len(list(head)), len(list(layer4))]
    assert {id(p) for g in groups for p in g["params"]} == trainable  # each exactly once
    optimizer = torch.optim.AdamW(groups, lr=1.0)
    set_lr(optimizer, 2e-3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([2e-3, 2e-4])
    frozen = finetune_groups(build_finetune_model(base, dim=8, hidden=16, trainable="head"), 0.1)
    assert len(frozen) == 1 and frozen[0]["lr_scale"] == 1.0  # no empty backbone group


def test_unwrap_model_strips_nested_wrappers_only() -> None:
    model = Tiny()
    assert unwrap_model(Wrapper(Wrapper(model))) is model
    assert unwrap_model(model) is model
    compiled = torch.compile(model)  # an OptimizedModule around ``_orig_mod``; never called
    assert unwrap_model(Wrapper(compiled)) is model

    class HasModuleAndMore(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(2, 2)
            self.other = nn.Linear(2, 2)

    has_more = HasModuleAndMore()
    assert unwrap_model(has_more) is has_more


def test_worker_threads_share_the_node() -> None:
    from echoseek.training.worker import worker_threads

    assert worker_threads(0, node_cpus=16, local_workers=4) == 4
    assert worker_threads(0, node_cpus=2, local_workers=1) == 2
    assert worker_threads(0, node_cpus=2, local_workers=4) == 1
    assert worker_threads(3, node_cpus=2, local_workers=4) == 3  # an explicit value wins


def test_data_tasks_are_the_cpus_left_after_the_workers() -> None:
    from echoseek.training.options import ScaleOptions
    from echoseek.training.trainer import data_task_limit

    laptop = ScaleOptions(num_workers=2, cpus_per_worker=0.5)
    assert data_task_limit(laptop, cluster_cpus=2) == 1  # floor(2 - 2 x 0.5)
    assert data_task_limit(laptop, cluster_cpus=3.5) == 2
    assert data_task_limit(ScaleOptions(num_workers=8, cpus_per_worker=8), 64) == 1  # at least 1
    assert data_task_limit(ScaleOptions(num_workers=4, cpus_per_worker=4), 64) == 48
    assert data_task_limit(ScaleOptions(data_tasks=3), cluster_cpus=2) == 3  # set: it wins
    with pytest.raises(ConfigError, match=r"scale\.data_tasks"):
        ScaleOptions(data_tasks=-1)
