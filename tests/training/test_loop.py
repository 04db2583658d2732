"""train_epoch, the step functions, embedding and the per-epoch metrics on tiny CPU models."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from echoseek.errors import InputError
from echoseek.evaluation.ranking import collapse_std, mean_average_precision, precision_at_k, rankme
from echoseek.losses import FastAPLoss
from echoseek.models import build_backbone, build_method
from echoseek.training import (
    EpochStats,
    NonFiniteLossError,
    embed_batches,
    fastap_step,
    param_groups,
    representation_metrics,
    retrieval_metrics,
    ssl_step,
    train_epoch,
    unwrap_model,
)

CPU = torch.device("cpu")
Batch = dict[str, torch.Tensor]


def regression_batches(n_batches: int = 3, batch: int = 8) -> list[Batch]:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 2, generator=gen)
    out = []
    for _ in range(n_batches):
        x = torch.randn(batch, 4, generator=gen)
        out.append({"image": x, "target": x @ w})
    return out


def mse_step(model: nn.Module, batch: Batch) -> torch.Tensor:
    return F.mse_loss(model(batch["image"]), batch["target"])


def fit(model: nn.Module, batches: list[Batch], **kwargs: object) -> EpochStats:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    defaults: dict[str, object] = {
        "model": model,
        "batches": batches,
        "optimizer": optimizer,
        "step_fn": mse_step,
        "lr_at": lambda step: 0.1,
        "start_step": 0,
        "device": CPU,
    }
    return train_epoch(**{**defaults, **kwargs})  # type: ignore[arg-type]


def test_loss_decreases_and_images_are_counted() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    batches = regression_batches()
    losses = []
    for epoch in range(4):
        stats = fit(model, batches, optimizer=optimizer, start_step=3 * epoch)
        losses.append(stats.loss)
        assert (stats.steps, stats.images) == (3, 24)
        assert stats.seconds > 0 and 0 <= stats.data_wait_seconds <= stats.seconds
        assert stats.images_per_s == pytest.approx(24 / stats.seconds)
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * losses[0]


def test_lr_is_set_per_global_step_except_fixed_groups() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(param_groups(model, fixed_lr_prefixes=("1.",)), lr=0.05)
    seen: list[int] = []

    def lr_at(step: int) -> float:
        seen.append(step)
        return 0.001 * step

    stats = fit(model, regression_batches(5), optimizer=optimizer, lr_at=lr_at, start_step=10)
    assert seen == [10, 11, 12, 13, 14] and stats.steps == 5
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(0.014), 0.05]


def test_max_steps_and_on_step_end() -> None:
    calls: list[int] = []
    stats = fit(
        nn.Linear(4, 2), regression_batches(5), max_steps=2, on_step_end=lambda: calls.append(1)
    )
    assert stats.steps == 2 and len(calls) == 2
    calls.clear()
    stats = fit(nn.Linear(4, 2), regression_batches(5), on_step_end=lambda: calls.append(1))
    assert stats.steps == 5 and len(calls) == 5


def test_non_finite_loss_raises_before_the_update() -> None:
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone()
    batches = regression_batches(2)
    batches[0]["target"][0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 5"):
        fit(model, batches, start_step=5)
    assert torch.equal(model.weight, before)


def test_empty_epoch_is_an_error() -> None:
    with pytest.raises(InputError, match="no batch"):
        fit(nn.Linear(4, 2), [])


def test_data_wait_is_measured_apart_from_compute() -> None:
    def slow_batches() -> Iterator[Batch]:
        for batch in regression_batches(3):
            time.sleep(0.05)
            yield batch

    slow = fit(nn.Linear(4, 2), slow_batches())
    assert slow.data_wait_seconds >= 0.15
    assert slow.wait_fraction > 0.8
    fast = fit(nn.Linear(4, 2), regression_batches(3))
    assert fast.wait_fraction < 0.5


def ssl_batches(n_batches: int = 2, batch: int = 4) -> list[Batch]:
    gen = torch.Generator().manual_seed(3)
    return [
        {
            "view1": torch.rand(batch, 1, 16, 16, generator=gen),
            "view2": torch.rand(batch, 1, 16, 16, generator=gen),
            "index": torch.arange(i * batch, (i + 1) * batch),
        }
        for i in range(n_batches)
    ]


def test_simsiam_epoch_with_ssl_step() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", in_channels=1, small_stem=True)
    method = build_method("simsiam", backbone, dim=32, pred_dim=8)
    groups = param_groups(method, fixed_lr_prefixes=("predictor",), weight_decay=1e-4)
    optimizer = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    stats = train_epoch(
        model=method,
        batches=ssl_batches(),
        optimizer=optimizer,
        step_fn=ssl_step,
        lr_at=lambda step: 0.05,
        start_step=0,
        device=CPU,
        on_step_end=unwrap_model(method).on_step_end,
    )
    assert stats.steps == 2 and stats.images == 8
    assert np.isfinite(stats.loss) and -1.0 <= stats.loss <= 1.0  # negative cosine similarity
    emb, labels = embed_batches(
        method, [{"image": ssl_batches()[0]["view1"]}], CPU, embed=method.embed
    )
    assert emb.shape == (4, backbone.feature_dim) and emb.dtype == np.float32
    assert labels.tolist() == [-1] * 4
    assert method.training  # embed_batches restores the mode


def test_fastap_step_epoch_is_finite() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 8)
    gen = torch.Generator().manual_seed(1)
    batches = [
        {"image": torch.randn(8, 4, generator=gen), "label": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])}
        for _ in range(2)
    ]
    loss = FastAPLoss(num_bins=10)
    stats = fit(model, batches, step_fn=fastap_step(lambda e, y: loss(F.normalize(e, dim=1), y)))
    assert stats.steps == 2 and 0.0 <= stats.loss <= 1.0


def test_embed_batches_is_eval_mode_without_grad() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model(torch.randn(16, 4))  # move the BN running statistics away from the defaults
    x = torch.randn(10, 4)
    batches = [
        {"image": x[:6], "label": torch.arange(6)},
        {"image": x[6:], "label": torch.arange(4)},
    ]
    emb, labels = embed_batches(model, batches, CPU)
    model.eval()
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(emb, expected, rtol=1e-6, atol=1e-6)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]


def labelled_embeddings() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=40)
    labels[:3] = -1  # unlabelled
    emb = rng.normal(size=(40, 6)) + labels[:, None] * 0.8
    return emb.astype(np.float32), labels


def test_retrieval_metrics_equal_the_metric_functions() -> None:
    emb, labels = labelled_embeddings()
    got = retrieval_metrics(emb, labels, k=10, positive_label=1)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    queries = np.flatnonzero(labels == 1)
    scores = unit[queries] @ unit.T
    relevant = labels[None, :] == 1
    relevant = np.broadcast_to(relevant, scores.shape)
    ignore = np.zeros(scores.shape, dtype=bool)
    ignore[np.arange(queries.size), queries] = True
    assert got["map"] == pytest.approx(mean_average_precision(scores, relevant, ignore), rel=1e-6)
    assert got["p@10"] == pytest.approx(
        precision_at_k(scores, relevant, 10, ignore).mean(), rel=1e-6
    )
    assert got["num_queries"] == queries.size


def test_representation_metrics_equal_the_metric_functions() -> None:
    emb, _ = labelled_embeddings()
    assert representation_metrics(emb) == {"rankme": rankme(emb), "collapse_std": collapse_std(emb)}
    collapsed = np.ones((10, 6), dtype=np.float32)
    got = representation_metrics(collapsed)
    assert got["collapse_std"] == pytest.approx(0.0, abs=1e-7) and got["rankme"] < 1.01


def test_simsiam_loss_decreases_on_a_fixed_batch() -> None:
    """The pretraining step learns: repeated steps on one batch pull the views together."""
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", in_channels=1, small_stem=True)
    method = build_method("simsiam", backbone, dim=32, pred_dim=8)
    optimizer = torch.optim.SGD(param_groups(method), lr=0.05, momentum=0.9)
    x = torch.rand(8, 1, 16, 16)
    batch = {"view1": x, "view2": (x + 0.05 * torch.randn_like(x)).clamp(0, 1)}
    losses = [
        train_epoch(
            model=method,
            batches=[batch],
            optimizer=optimizer,
            step_fn=ssl_step,
            lr_at=lambda step: 0.05,
            start_step=epoch,
            device=CPU,
        ).loss
        for epoch in range(8)
    ]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.05, losses


def test_prepare_runs_on_every_batch_inside_the_step_and_the_first_step_is_stamped() -> None:
    """``prepare`` maps each batch (as augmentation does on the device) before the step, and
    its time counts as step time, not data wait; ``first_step_at`` is the wall clock after the
    first optimizer step."""
    seen: list[int] = []

    def prepare(batch: Batch) -> Batch:
        time.sleep(0.05)  # slow augmentation: step time, not data wait
        seen.append(len(batch["image"]))
        return {"image": batch["image"] * 0, "target": batch["target"]}

    before = time.time()
    stats = fit(nn.Linear(4, 2), regression_batches(), prepare=prepare)
    assert seen == [8, 8, 8]
    assert stats.data_wait_seconds < 0.05 and stats.seconds >= 0.15
    assert before < stats.first_batch_at < stats.first_step_at < before + stats.seconds + 0.01


def test_two_view_inputs_augment_uint8_frames_for_the_ssl_step() -> None:
    from echoseek.data.augment import AugmentConfig, Augmenter
    from echoseek.training import augmented_inputs, two_view_inputs

    frames = torch.randint(0, 256, (6, 1, 40, 40), dtype=torch.uint8)
    batch = {"image": frames, "index": torch.arange(6), "label": torch.zeros(6, dtype=torch.long)}
    augmenter = Augmenter(AugmentConfig(size=16), seed=0)
    views = two_view_inputs(augmenter)(batch)
    assert set(views) == {"view1", "view2", "index"}
    assert views["view1"].shape == (6, 1, 16, 16) and not torch.equal(
        views["view1"], views["view2"]
    )
    one = augmented_inputs(augmenter)(batch)
    assert set(one) == {"image", "label"} and one["image"].shape == (6, 1, 16, 16)
    method = build_method("simsiam", build_backbone("resnet18", 1, True, "avg"), dim=32, pred_dim=8)
    assert torch.isfinite(ssl_step(method, views))
