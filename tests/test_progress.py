"""The live progress line and its ETA."""

from __future__ import annotations

import math

import pytest

from echoseek.training import epoch_line, eta_seconds


def test_eta_is_mean_epoch_time_times_epochs_left() -> None:
    assert eta_seconds(30.0, 3, 10) == pytest.approx(70.0)
    assert eta_seconds(30.0, 10, 10) == 0.0
    assert math.isnan(eta_seconds(0.0, 0, 10))
    with pytest.raises(ValueError, match="done"):
        eta_seconds(1.0, 11, 10)


def test_epoch_line() -> None:
    line = epoch_line(3, 100, 0.42131, 1234.4, 3723.0, metric=0.746, metric_name="val_map")
    assert line == "epoch 3/100  loss 0.4213  1234 img/s  eta 1:02:03  val_map 0.7460"
    assert epoch_line(1, 2, 1.0, 5.0, math.nan) == "epoch 1/2  loss 1.0000  5 img/s  eta ?"
