"""What a sweep trial adds to a training run (the training side; :mod:`echoseek.sweep` drives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Trial:
    """What a sweep trial (:mod:`echoseek.sweep`) adds to a training run: the MLflow run it
    nests under, its overrides (logged as ``override.<field>`` params) and the Ray Train
    callbacks that report each epoch to Tune. A trial prints no epoch lines of its own; the
    sweep prints one line per trial result."""

    parent_run_id: str
    overrides: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)

    def tags(self) -> dict[str, str]:
        """MLflow tags that nest the run under the sweep's parent run."""
        return {"mlflow.parentRunId": self.parent_run_id}

    def params(self) -> dict[str, Any]:
        """The trial's overrides as MLflow params."""
        return {f"override.{key}": value for key, value in self.overrides.items()}
