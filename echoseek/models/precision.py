"""Automatic mixed precision: which dtype, whether a GradScaler, and the autocast context.

bfloat16 has float32's exponent range, so it trains without loss scaling; float16 (GPUs before
Ampere) needs a :class:`torch.amp.GradScaler` to keep small gradients from underflowing
(Micikevicius et al., "Mixed Precision Training", ICLR 2018). On the CPU training stays float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def amp_dtype(device: torch.device | str, enabled: bool = True) -> torch.dtype | None:
    """bfloat16 on a CUDA device that supports it, float16 on other CUDA devices, else None.

    None (CPU, or ``enabled=False``) means full float32: no autocast, no scaler.
    """
    device = torch.device(device)
    if not enabled or device.type != "cuda":
        return None
    with torch.cuda.device(device):
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if bf16 else torch.float16


def make_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A CUDA GradScaler for float16 training; None for bfloat16 and float32 (not needed)."""
    return torch.amp.GradScaler("cuda") if dtype == torch.float16 else None


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast(device.type, dtype)``, or nothing at all when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield
