"""The chained trial job ``pretrain+finetune``: pretrain an encoder, then fine-tune it.

A chained trial searches both stages at once (``pretrain.augment.crop_scale_min`` with
``finetune.loss.distance``), so a sweep can ask whether an augmentation helps the *downstream*
ranking, not only the SSL loss. Only the fine-tuning stage reports to Tune: its per-epoch
held-out metric is the trial's objective and what ASHA stops on. Each stage is its own nested
MLflow run (``<trial>-pretrain`` and ``<trial>``); a retried trial whose encoder was already
exported goes straight to fine-tuning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoseek.training.finetune import FinetuneConfig, finetune
from echoseek.training.pretrain import PretrainConfig, pretrain
from echoseek.training.trial import Trial
from echoseek.training.worker import EpochHook

NAME = "pretrain+finetune"
STAGES = ("pretrain", "finetune")


@dataclass
class ChainConfig:
    """Both stages' configs; the fine-tuning stage starts from the encoder pretraining wrote to
    ``pretrain.output`` (its own ``pretrained`` is replaced)."""

    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def stages(cfg: Any) -> list[Any]:
    """The job configs inside a trial's config, in run order; the last one reports to Tune."""
    return [cfg.pretrain, cfg.finetune] if isinstance(cfg, ChainConfig) else [cfg]


def pretrain_then_finetune(
    cfg: ChainConfig, hooks: Sequence[EpochHook] = (), trial: Trial | None = None
) -> dict[str, Any]:
    """Pretrain (unless its encoder is already exported), then fine-tune from it; the
    fine-tuning summary, with the encoder's path. ``hooks`` go to both stages' loops."""
    encoder = Path(cfg.pretrain.output)
    if not (encoder / "model.json").is_file():
        quiet = dataclasses.replace(trial, callbacks=[]) if trial is not None else None
        pretrain(cfg.pretrain, hooks, trial=quiet)
    stage = dataclasses.replace(cfg.finetune, pretrained=str(encoder))
    return {**finetune(stage, hooks, trial=trial), "pretrained": str(encoder)}
