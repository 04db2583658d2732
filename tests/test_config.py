"""Typed YAML configs with dotted key=value overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from echoseek.config import flatten, load_config, to_dict
from echoseek.errors import ConfigError


@dataclass
class Train:
    lr: float = 0.1
    epochs: int = 2
    distance: Literal["cosine", "sqeuclidean"] = "cosine"


@dataclass
class Job:
    input: str = ""
    output: str = "out"
    seed: int | None = None
    ks: list[int] = field(default_factory=lambda: [10])
    train: Train = field(default_factory=Train)
    amp: bool = False


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("input: data\ntrain:\n  lr: 0.5\n  epochs: 3\n")
    cfg = load_config(Job, path, ["train.lr=1e-3", "ks=[5, 50]", "seed=7", "amp=true"])
    assert cfg.input == "data" and cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.epochs == 3 and cfg.ks == [5, 50] and cfg.seed == 7 and cfg.amp is True


def test_int_is_accepted_for_float_and_null_for_optional() -> None:
    cfg = load_config(Job, None, ["train.lr=1", "seed=null"])
    assert isinstance(cfg.train.lr, float) and cfg.seed is None


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lrr=1", "unknown config field 'train.lrr'"),
        ("train.epochs=two", "train.epochs: expected an integer"),
        ("train.distance=manhattan", "train.distance: must be one of"),
        ("amp=maybe", "amp: expected true or false"),
        ("ks=3", "ks: expected a list"),
        ("train=3", "train: expected a mapping"),
        ("noequals", "expected key=value"),
        ("input.x=1", "'input' is not a section"),
    ],
)
def test_bad_overrides_name_the_field(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Job, None, ["input=a", override])


def test_bad_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Job, tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Job, tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(Job, tmp_path / "list.yaml")


def test_flatten_for_mlflow_params() -> None:
    cfg = load_config(Job, None, ["train.lr=0.2"])
    flat = flatten(to_dict(cfg))
    assert flat["train.lr"] == 0.2 and flat["train.distance"] == "cosine" and "train" not in flat
