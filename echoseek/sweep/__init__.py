"""Hyperparameter sweeps on Ray Tune: search spaces, the trial driver, results and figures.

:func:`run_sweep` runs ``num_samples`` trials of the pretrain or finetune job (or the chain
``pretrain+finetune``, :mod:`echoseek.sweep.chain`), each the job's own training function with
one draw of the search space (:mod:`echoseek.sweep.space`),
stopped early by ASHA on the per-epoch held-out metric, tracked as nested MLflow runs.
"""

from echoseek.sweep.config import SchedulerOptions, SweepConfig
from echoseek.sweep.space import KINDS, Param, parse_space, to_tune
from echoseek.sweep.tuner import run_sweep

__all__ = [
    "KINDS",
    "Param",
    "SchedulerOptions",
    "SweepConfig",
    "parse_space",
    "run_sweep",
    "to_tune",
]
