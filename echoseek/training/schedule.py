"""Learning rate: the linear scaling rule, warmup + cosine decay, and parameter groups.

The lr at optimizer step s is ``peak_lr * warmup_cosine(s, total_steps, warmup_steps)`` with
``peak_lr = scaled_lr(base_lr, global_batch)``; :func:`set_lr` applies it to every group
except those built with ``fixed_lr=True`` (SimSiam's fixed-lr predictor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from echoseek.errors import ConfigError
from echoseek.training.unwrap import unwrap_model


def scaled_lr(base_lr: float, global_batch: int, reference: int = 256) -> float:
    """Linear scaling rule: ``lr = base_lr × global_batch / reference``.

    Goyal et al., "Accurate, Large Minibatch SGD", 2017, §2.1; SimSiam (Chen & He 2021, §4.1)
    uses ``lr = 0.05 × B / 256``. ``global_batch`` = per-worker batch × number of workers.
    """
    if not base_lr > 0:
        raise ConfigError(f"lr: must be > 0, got {base_lr}")
    if global_batch < 1 or reference < 1:
        raise ConfigError(
            f"batch size: global batch and reference must be >= 1, got {global_batch}, {reference}"
        )
    return base_lr * global_batch / reference


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, final_ratio: float = 0.0
) -> float:
    """The lr multiplier at 0-based optimizer step ``step``.

    With W = ``warmup_steps``, T = ``total_steps`` and r = ``final_ratio``::

        m(s) = (s + 1) / W                                    for s < W   (linear warmup)
        m(s) = r + (1 − r) · (1 + cos(π · t)) / 2,  t = min(1, (s − W) / (T − W))   for s ≥ W

    so m rises from 1/W to 1 over the first W steps, is 1 at s = W and follows a half cosine
    down to r at s = T (and stays there). W = 0 gives plain cosine decay (Loshchilov & Hutter,
    "SGDR", 2017), as in SimSiam.
    """
    if total_steps < 1:
        raise ConfigError(f"total_steps: must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ConfigError(
            f"warmup_steps: must be in [0, total_steps={total_steps}), got {warmup_steps}"
        )
    if not 0.0 <= final_ratio <= 1.0:
        raise ConfigError(f"final_ratio: must be in [0, 1], got {final_ratio}")
    if step < 0:
        raise ConfigError(f"step: must be >= 0, got {step}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def param_groups(
    model: nn.Module,
    fixed_lr_prefixes: Sequence[str] = (),
    weight_decay: float = 0.0,
    no_decay_bias_norm: bool = False,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups, each with ``params``, ``weight_decay`` and ``fixed_lr``.

    Parameters whose name (in the unwrapped model, e.g. ``predictor.0.weight``) starts with one
    of ``fixed_lr_prefixes`` go to groups flagged ``fixed_lr=True``, which :func:`set_lr` leaves
    at their initial lr (SimSiam §4.1/Table 1: "fix the predictor lr"). With
    ``no_decay_bias_norm``, 1-D parameters (biases, norm scales and shifts, GeM's p) get no
    weight decay. Frozen parameters (``requires_grad=False``) are left out; empty groups too.
    """
    if weight_decay < 0:
        raise ConfigError(f"weight_decay: must be >= 0, got {weight_decay}")
    prefixes = tuple(fixed_lr_prefixes)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in unwrap_model(model).named_parameters():
        if not param.requires_grad:
            continue
        fixed = name.startswith(prefixes) if prefixes else False
        decay = not (no_decay_bias_norm and param.ndim <= 1)
        groups.setdefault((fixed, decay), []).append(param)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "fixed_lr": fixed}
        for (fixed, decay), params in sorted(groups.items())
    ]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr x lr_scale`` on every parameter group (``lr_scale`` 1 when absent) except those
    flagged ``fixed_lr``, which keep theirs. ``lr_scale`` gives discriminative learning rates:
    a pretrained backbone at a fraction of a new head's rate."""
    for group in optimizer.param_groups:
        if not group.get("fixed_lr", False):
            group["lr"] = lr * group.get("lr_scale", 1.0)
