"""The chained trial job (pretrain+finetune): stage-prefixed fields, its checks, best files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from echoseek.config import load_config
from echoseek.errors import ConfigError
from echoseek.sweep.chain import ChainConfig, stages
from echoseek.sweep.config import SweepConfig
from echoseek.sweep.trial import reproducible
from echoseek.sweep.tuner import prepare
from echoseek.training.finetune import FinetuneConfig
from echoseek.training.pretrain import PretrainConfig


def chain(tmp_path: Path, **kw: Any) -> SweepConfig:
    pre = tmp_path / "pre.yaml"
    pre.write_text(yaml.safe_dump({"epochs": 3, "output": "work/enc", "batch_size": 16}))
    values: dict[str, Any] = {
        "job": "pretrain+finetune",
        "base": {"pretrain": str(pre)},
        "input": str(tmp_path / "ds"),
        "fixed": {"finetune.val": str(tmp_path / "val"), "finetune.epochs": 2},
        "output": str(tmp_path / "out"),
        "storage_path": str(tmp_path / "ray"),
        "space": {
            "pretrain.augment.crop_scale_min": {"choice": [0.2, 0.6]},
            "finetune.loss.distance": {"choice": ["cosine", "soart3_gamma"]},
        },
        **kw,
    }
    return SweepConfig(**values)


def test_both_stages_get_the_input_and_their_own_base(tmp_path: Path) -> None:
    prep = prepare(chain(tmp_path))
    cfg = load_config(ChainConfig, None, [])  # the chain's defaults are each job's defaults
    assert [type(s) for s in stages(cfg)] == [PretrainConfig, FinetuneConfig]
    assert prep.base["pretrain"]["input"] == prep.base["finetune"]["input"] == str(tmp_path / "ds")
    assert prep.base["pretrain"]["epochs"] == 3 and prep.base["pretrain"]["batch_size"] == 16
    assert prep.epochs == 2  # ASHA's rungs count the fine-tuning stage's epochs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"space": {"pretrain.augment.crop": {"choice": [0.2]}}}, "unknown config field "
         "'pretrain.augment.crop'"),
        ({"space": {"finetune.loss.distance": {"choice": ["l7"]}}},
         r"space\.finetune\.loss\.distance: 'l7' is refused"),
        ({"space": {"loss.distance": {"choice": ["cosine"]}}}, "unknown config field 'loss'"),
        ({"fixed": {}}, "finetune.val: a chained trial needs a held-out labelled dataset"),
        ({"base": {"pretrian": "x.yaml"}}, "base: unknown stage 'pretrian'"),
        ({"base": "ray_jobs/finetune.yaml"}, r"base: job pretrain\+finetune needs"),
    ],
)  # fmt: skip
def test_bad_chains_fail_before_any_trial(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(chain(tmp_path, **change))


def test_a_single_job_refuses_a_per_stage_base(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base: expected the finetune job's YAML file"):
        prepare(SweepConfig(base={"finetune": "x.yaml"}, input=str(tmp_path)))


def test_best_files_rerun_the_chain_in_order(tmp_path: Path) -> None:
    prep = prepare(chain(tmp_path))
    draw = {"pretrain.augment.crop_scale_min": 0.6, "finetune.loss.distance": "soart3_gamma"}
    files = reproducible("pretrain+finetune", prep.base, draw)
    assert sorted(files) == ["best.yaml", "best_pretrain.yaml"]
    for name, data in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(data))
    pre = load_config(PretrainConfig, tmp_path / "best_pretrain.yaml")
    fine = load_config(FinetuneConfig, tmp_path / "best.yaml")
    assert pre.augment.crop_scale_min == 0.6 and pre.epochs == 3 and pre.run.name == ""
    assert fine.loss.distance == "soart3_gamma" and fine.val == str(tmp_path / "val")
    assert fine.pretrained == pre.output == "work/enc"  # fine-tunes what best_pretrain writes
