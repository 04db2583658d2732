"""The sweep's terminal: one line per trial result, one per finished trial, a closing table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ray.tune import Callback

from echoseek.sweep.results import text


class SweepPrinter(Callback):  # type: ignore[misc]
    """Tune callback on the driver: trial, epoch, metric, best so far, trials by state."""

    def __init__(self, metric: str, mode: str, epochs: int) -> None:
        self.metric = metric
        self.sign = 1.0 if mode == "max" else -1.0
        self.epochs = epochs
        self.best = -math.inf
        self.best_trial = ""
        self.failed = 0
        self.stopped = 0

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        value = float(result.get(self.metric, math.nan))
        if math.isfinite(value) and self.sign * value > self.best:
            self.best, self.best_trial = self.sign * value, trial.trial_id
        epoch = int(result.get("training_iteration", 0))
        print(
            f"trial {trial.trial_id}  epoch {epoch}/{self.epochs}  {self.metric} {value:.4f}  "
            f"best {self.sign * self.best:.4f} ({self.best_trial})  {self.counts(trials)}",
            flush=True,
        )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get("training_iteration", 0))
        if epochs < self.epochs:
            self.stopped += 1
            print(f"trial {trial.trial_id}  stopped early after epoch {epochs}", flush=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.failed += 1
        print(f"trial {trial.trial_id}  failed: {first_line(trial.error_file)}", flush=True)

    def counts(self, trials: Sequence[Any]) -> str:
        """``trials: D done, R running, S stopped, F failed``."""
        done = sum(t.status == "TERMINATED" for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        return (
            f"trials: {done - self.stopped} done, {running} running, {self.stopped} stopped, "
            f"{self.failed} failed"
        )


def first_line(error_file: str | None) -> str:
    """The last line of a trial's error file (the exception), or ``unknown error``."""
    if not error_file:
        return "unknown error"
    try:
        with open(error_file) as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "unknown error"
    return lines[-1] if lines else "unknown error"


def top_table(rows: Sequence[dict[str, Any]], metric: str, keys: Sequence[str], n: int = 5) -> str:
    """A plain-text table of the ``n`` best trials (rows sorted best first)."""
    head = ["trial", "status", metric, *keys]
    body = [
        [
            str(r["trial_id"]),
            str(r["status"]),
            f"{r['best']:.4f}" if math.isfinite(r["best"]) else "-",
            *(text(r["params"].get(k)) for k in keys),
        ]
        for r in rows[:n]
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [head, *body]
    ]
    return "\n".join(lines)
