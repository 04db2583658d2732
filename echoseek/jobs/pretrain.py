"""Self-supervised pretraining (SimSiam by default) on Ray Train, tracked in MLflow.

    echoseek pretrain ray_jobs/pretrain.yaml
    echoseek pretrain input=work/dataset output=work/model_ssl epochs=5 scale.num_workers=2
    ray job submit --working-dir . -- python -m echoseek.jobs.pretrain ray_jobs/pretrain.yaml

Each Ray Train worker builds the method (``method``: simsiam, byol, barlow, simclr, instdisc)
on a ResNet backbone, wraps it in DDP and trains on its shard of the two-view Ray Data stream;
every epoch it reports loss and img/s, rank 0 adds RankMe, the collapse std and (with a
labelled, held-out ``val``) retrieval mAP, and checkpoints. Re-running the same ``run.name``
resumes. The training itself is :func:`echoseek.training.pretrain.pretrain`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from echoseek.jobs.runner import output_lines, run_job
from echoseek.training.pretrain import PretrainConfig as Config
from echoseek.training.pretrain import pretrain

__all__ = ["Config", "main", "run"]


def run(cfg: Config) -> dict[str, Any]:
    """Pretrain on Ray, export the encoder, log the run; returns a summary."""
    return pretrain(cfg)


def summarize(s: dict[str, Any]) -> str:
    """The closing lines for the terminal."""
    val = f", val mAP {s['val_map']:.3f}" if s.get("val_map") is not None else ""
    head = f"pretrained {s['epochs']} epochs in {s['seconds']:.0f} s: loss {s['loss']:.4f}{val}"
    return "\n".join([head, *output_lines(s)])


def main(argv: Sequence[str] | None = None, prog: str = "echoseek pretrain") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
