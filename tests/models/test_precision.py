"""Mixed precision choices on the CPU (GPU branches are exercised by the jobs on a GPU)."""

from __future__ import annotations

import pytest
import torch

from echoseek.training import amp_dtype, autocast, make_scaler


def test_cpu_trains_in_float32_without_scaler() -> None:
    cpu = torch.device("cpu")
    assert amp_dtype(cpu) is None
    assert amp_dtype(cpu, enabled=False) is None
    assert make_scaler(amp_dtype(cpu)) is None
    assert make_scaler(torch.bfloat16) is None


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
def test_scaler_only_for_float16() -> None:
    assert isinstance(make_scaler(torch.float16), torch.amp.GradScaler)


def test_autocast_none_is_a_no_op_and_dtype_applies() -> None:
    a = torch.ones(2, 2)
    with autocast(torch.device("cpu"), None):
        assert (a @ a).dtype == torch.float32
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
