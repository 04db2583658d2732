"""The training entry points and their checks resolve a copy of the caller's config: paths,
run name, memory bank size and the pretrained model are never written back into it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from echoseek.errors import ConfigError
from echoseek.models import ModelMeta, build_model, save_model
from echoseek.training import finetune as ft
from echoseek.training import pretrain as pt
from tests.datasets import ingested_stack, random_stack

META = ModelMeta(backbone="resnet18", small_stem=True, head_dim=None, head_hidden=None,
                 input_size=(16, 16), mean=(0.5,), std=(0.5,))  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("copies")
    ingested_stack(tmp, random_stack(16, 16, 24), labelled=24, shard_size=12)
    save_model(build_model(META), tmp / "pretrained", META)
    return tmp


def test_pretrain_check_returns_a_sized_copy(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    cfg = pt.PretrainConfig(input="ds", output="out", method="instdisc", batch_size=4)
    before = copy.deepcopy(cfg)
    resolved, desc = pt.check(pt.resolve(cfg))
    assert resolved.model.method_options["num_data"] == desc["count"] == 24
    assert resolved.input == str(work / "ds") and resolved.run.name.startswith("pretrain-")
    assert cfg == before


def test_pretrain_leaves_the_callers_config_alone(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(work)
    cfg = pt.PretrainConfig(input="ds", output="out", method="instdisc", batch_size=64)
    before = copy.deepcopy(cfg)
    with pytest.raises(ConfigError, match="workers gets only"):
        pt.pretrain(cfg)
    assert cfg == before


def finetune_config(**fields: object) -> ft.FinetuneConfig:
    return ft.FinetuneConfig(input="ds", pretrained="pretrained", output="out", **fields)  # type: ignore[arg-type]  # fields: test values


def test_finetune_check_returns_a_resolved_copy(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(work)
    cfg = finetune_config(batch_size=8)
    before = copy.deepcopy(cfg)
    resolved, _, validation = ft.check(ft.resolve(cfg), f"sqlite:///{work / 'mlflow.db'}")
    assert resolved.pretrained == str(work / "pretrained") and validation.kind
    assert resolved.run.name.startswith("finetune-")
    assert cfg == before


def test_finetune_leaves_the_callers_config_alone(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(work)
    cfg = finetune_config(batch_size=8, loss=ft.LossOptions(m=2))
    before = copy.deepcopy(cfg)
    with pytest.raises(ConfigError, match="classes per batch"):
        ft.finetune(cfg)
    assert cfg == before
