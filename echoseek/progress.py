"""Progress on the terminal: the epoch line with the time left, and a live progress bar."""

from __future__ import annotations

import math
import sys
import time


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


class ProgressBar:
    """A live one-line bar on stderr for a long stage: ``embed [#####.....] 512/1000 41 img/s
    eta 0:00:12``. Redrawn in place (at most every ``every_s`` seconds) on a terminal; on a
    pipe or a log file nothing is drawn until :meth:`close` prints the final line once."""

    def __init__(self, label: str, total: int, unit: str = "img", every_s: float = 0.5) -> None:
        self.label, self.total, self.unit, self.every_s = label, max(1, total), unit, every_s
        self.done = 0
        self.started = self._drawn = time.perf_counter()
        self.live = sys.stderr.isatty()

    def line(self, now: float) -> str:
        """The bar for ``done`` of ``total`` after ``now - started`` seconds."""
        width = 24
        filled = min(width, round(width * self.done / self.total))
        rate = self.done / max(now - self.started, 1e-9)
        eta = eta_seconds(now - self.started, self.done, max(self.done, self.total))
        return (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{rate:.0f} {self.unit}/s eta {format_duration(eta)}"
        )

    def update(self, n: int) -> None:
        """Count ``n`` more items done; redraw when live and due."""
        self.done += n
        now = time.perf_counter()
        if self.live and now - self._drawn >= self.every_s:
            self._drawn = now
            print(f"\r{self.line(now)}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        """The final line, once."""
        print(f"\r{self.line(time.perf_counter())}", file=sys.stderr, flush=True)
