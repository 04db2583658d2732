"""Test-only fault injection: an epoch hook that crashes one Train worker once per run."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cloudpickle

# Train workers do not import the tests package: ship this module's code with the hook.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class FailOnce:
    """At the start of ``epoch``, raise in the last rank, once per ``marker`` file."""

    marker: Path
    epoch: int

    def __call__(self, epoch: int, rank: int, world: int) -> None:
        if epoch != self.epoch or rank != world - 1 or self.marker.exists():
            return
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(f"failed at epoch {epoch}, pid {os.getpid()}\n")
        raise RuntimeError(f"injected failure at epoch {epoch} (test only)")
