"""`echoseek finetune` on a real local Ray cluster: 2 CPU workers, FastAP on the global batch."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from echoseek.cli import main as cli
from echoseek.config import load_config
from echoseek.jobs import finetune
from echoseek.models import ModelMeta, build_model, load_model, save_model
from tests.datasets import ingested_stack, random_stack

pytestmark = pytest.mark.slow

META = ModelMeta(backbone="resnet18", small_stem=True, head_dim=None, head_hidden=None,
                 input_size=(16, 16), mean=(0.5,), std=(0.5,))  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("finetune")
    frames = random_stack(20, 20, 48)
    frames[:, :, 1::2] //= 3  # class 1 is darker: something to learn
    dataset = ingested_stack(tmp, frames, labelled=48, shard_size=12)
    torch.manual_seed(0)
    save_model(build_model(META), tmp / "pretrained", META)
    return dataset, tmp / "pretrained"


def args(data: tuple[Path, Path], tmp: Path, **overrides: Any) -> list[str]:
    values = {
        "input": data[0],
        "pretrained": data[1],
        "output": tmp / "model",
        "epochs": 2,
        "batch_size": 8,
        "loss.m": 4,
        "head.dim": 16,
        "head.hidden": 32,
        "scale.num_workers": 2,
        "scale.data_cpus": 0.25,
        "run.name": "ft",
        "run.storage_path": tmp / "ray",
        "run.tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
        **overrides,
    }
    return [f"{k}={v}" for k, v in values.items()]


def test_two_workers_rank_the_global_batch_and_export_the_best(
    ray_session: Any, data: tuple[Path, Path], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    cfg = load_config(
        finetune.Config, None, args(data, tmp_path, **{"head.trainable": "last_stage"})
    )
    out = finetune.run(cfg)
    model, meta = load_model(tmp_path / "model")
    assert meta.head_dim == 16 and meta.distance == "sqeuclidean"
    assert meta.extra["pretrained"] == str(data[1])
    pretrained, _ = load_model(data[1])
    same = [
        torch.equal(pretrained.backbone.state_dict()[k], v)
        for k, v in model.backbone.state_dict().items()
    ]
    assert all(same[: len(same) // 2]) and not all(same)  # early layers frozen, layer4 trained

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(out["run_id"], "fastap_batch")
    assert [m.value for m in history] == [16.0, 16.0]  # 8 per worker x 2 workers, gathered
    maps = {m.step: m.value for m in client.get_metric_history(out["run_id"], "val_map")}
    assert out["val_map"] == pytest.approx(max(maps.values()))  # the best epoch was exported
    assert out["best_epoch"] == max(maps, key=maps.get)  # type: ignore[arg-type]
    assert np.isfinite([m.value for m in client.get_metric_history(out["run_id"], "loss")]).all()

    # the starting point: the pretrained encoder itself on the same held-out rows, before a step
    from echoseek.data.augment import eval_transform
    from echoseek.data.dataset import labelled_ids
    from echoseek.data.split import stratified_split
    from echoseek.data.views import eval_view
    from echoseek.models.artifact import eval_augment
    from echoseek.training import embed_batches, retrieval_metrics

    split = stratified_split(*labelled_ids(data[0]), 0.2, 0)
    pretrained_meta = load_model(data[1])[1]
    augment = eval_augment(pretrained_meta)
    view = eval_view(str(data[0]), augment.in_channels, augment.size, keep=split.val)
    batches = view.iter_torch_batches(batch_size=64)
    transform = partial(eval_transform, cfg=augment)
    vectors, labels = embed_batches(pretrained, batches, torch.device("cpu"), transform=transform)
    start = retrieval_metrics(vectors, labels, 10, None)["map"]
    assert out["start_val_map"] == pytest.approx(start, abs=1e-5)
    assert out["val_map_gain"] == pytest.approx(out["val_map"] - start, abs=1e-5)
    starts = [m.value for m in client.get_metric_history(out["run_id"], "start_val_map")]
    assert len(starts) >= 2 and starts == pytest.approx([start] * len(starts), abs=1e-5)
    tag = client.get_run(out["run_id"]).data.tags["echoseek.finetune.beat_start"]
    assert tag == str(out["val_map_gain"] > 0).lower() and out["beat_start"] == (tag == "true")


@pytest.mark.parametrize("gain", [0.2, -0.1])
def test_summary_warns_when_no_epoch_beat_the_pretrained_encoder(gain: float) -> None:
    summary = {
        "seconds": 10.0, "best_epoch": 1, "val_map": 0.5, "val_p@10": 0.6, "output": "/m",
        "validation": {"kind": "dataset", "val": "/v"}, "run_id": "r", "storage": "/s",
        "start_val_map": 0.5 - gain, "val_map_gain": gain, "beat_start": gain > 0,
    }  # fmt: skip
    text = finetune.summarize(summary)
    assert f"scored {0.5 - gain:.3f} before fine-tuning ({gain:+.3f})" in text
    assert text.count("warning: no epoch beat the pretrained encoder") == (gain < 0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"optim.lr": -1}, "optim.lr: must be > 0"),
        ({"batch_size": 6}, "batch_size: must be a multiple of loss.m"),
        ({"loss.distance": "nope"}, "loss.distance: unknown 'nope'"),
        ({"loss.distance_params.p": 2}, "distance 'sqeuclidean': unknown parameter 'p'"),
        ({"loss.distance": "soart3_gamma", "loss.distance_params.p": 0.5}, "p must be >= 1"),
        ({"val_distance": "l7"}, "val_distance: unknown 'l7'"),
        ({"head.trainable": "layer2"}, "head.trainable: must be one of"),
        ({"pretrained": "/nowhere"}, "model directory not found"),
    ],
)
def test_bad_configs_fail_before_any_worker(
    data: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    override: dict[str, Any],
    message: str,
) -> None:
    assert cli(["finetune", *args(data, tmp_path, **override)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ray").exists()


@pytest.mark.parametrize(
    ("trainable", "frozen_bn_training", "trained_prefixes"),
    [("head", False, ()), ("last_stage", False, ("layer4",)), ("all", True, ("",))],
)
def test_trainable_parts_and_batchnorm_modes(
    trainable: str, frozen_bn_training: bool, trained_prefixes: tuple[str, ...]
) -> None:
    from echoseek.models.backbones import build_backbone
    from echoseek.models.finetune import build_finetune_model
    from echoseek.models.head import EmbeddingModel

    base = EmbeddingModel(build_backbone("resnet18", 1, True, "avg"))
    model = build_finetune_model(base, dim=8, hidden=512, trainable=trainable)
    model.train()
    for name, p in model.backbone.named_parameters():
        assert p.requires_grad == any(name.startswith(t) for t in trained_prefixes), name
    assert all(p.requires_grad for p in model.head.parameters())
    assert model.backbone.bn1.training == frozen_bn_training  # the stem's BatchNorm
    assert model.backbone.layer4.training == (trainable != "head")
