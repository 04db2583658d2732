"""FastAP fine-tuning of a pretrained encoder on Ray Train, tracked in MLflow.

    echoseek finetune ray_jobs/finetune.yaml
    echoseek finetune input=work/dataset pretrained=work/model_ssl output=work/model
    echoseek finetune input=work/dataset pretrained=models:/encoder/3 loss.distance=soart3_gamma
    ray job submit --working-dir . -- python -m echoseek.jobs.finetune ray_jobs/finetune.yaml

A new embedding head on the pretrained encoder, trained with FastAP on m-per-class batches
ranked against the global batch of all workers. Validation is held out: ``val=`` another
labelled dataset, or by default a seeded, label-stratified ``val_fraction`` of ``input`` that
is never trained on; the best checkpoint by held-out mAP is exported. The training itself is
:func:`echoseek.training.finetune.finetune`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from echoseek.jobs.runner import output_lines, run_job
from echoseek.training.finetune import FinetuneConfig as Config
from echoseek.training.finetune import finetune

__all__ = ["Config", "main", "run"]


def run(cfg: Config) -> dict[str, Any]:
    """Fine-tune on Ray, export the best held-out checkpoint, log the run; returns a summary."""
    return finetune(cfg)


def summarize(s: dict[str, Any]) -> str:
    """The closing lines for the terminal."""
    v = s["validation"]
    on = (
        f"{v['val_rows']} held-out rows of the input"
        if v["kind"] == "held_out_split"
        else f"{v['val']}"
    )
    head = (
        f"fine-tuned in {s['seconds']:.0f} s: best epoch {s['best_epoch']}, "
        f"val mAP {s['val_map']:.3f}, P@10 {s['val_p@10']:.2f} (on {on})"
    )
    start = (
        f"the pretrained encoder scored {s['start_val_map']:.3f} before fine-tuning "
        f"({s['val_map_gain']:+.3f})"
    )
    if not s["beat_start"]:
        start = f"warning: no epoch beat the pretrained encoder: {start}"
    return "\n".join([head, start, *output_lines(s)])


def main(argv: Sequence[str] | None = None, prog: str = "echoseek finetune") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
