"""One live progress line per epoch, and the time left."""

from __future__ import annotations

import math


def eta_seconds(elapsed_epochs_seconds: float, done: int, total: int) -> float:
    """Seconds left if the remaining epochs take the mean time of those done.

    ``eta = elapsed / done × (total − done)``; NaN (unknown) before the first epoch ends.
    """
    if not 0 <= done <= total:
        raise ValueError(f"eta_seconds: need 0 <= done <= total, got done={done}, total={total}")
    if done == 0:
        return math.nan
    return elapsed_epochs_seconds / done * (total - done)


def epoch_line(
    epoch: int,
    epochs: int,
    loss: float,
    images_per_s: float,
    eta_s: float,
    metric: float | None = None,
    metric_name: str = "val_map",
) -> str:
    """``epoch 3/100  loss 0.4213  1234 img/s  eta 1:02:03  val_map 0.7460``.

    ``epoch`` counts from 1 (the epoch just finished); the metric is shown when given.
    """
    parts = [
        f"epoch {epoch}/{epochs}",
        f"loss {loss:.4f}",
        f"{images_per_s:.0f} img/s",
        f"eta {format_duration(eta_s)}",
    ]
    if metric is not None:
        parts.append(f"{metric_name} {metric:.4f}")
    return "  ".join(parts)


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
