"""Test-only fault injection: an epoch hook that crashes one Train worker once per run."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

# Train workers do not import the tests package: ship this module's code with the hook.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class FailOnce:
    """At the start of ``epoch``, raise in the last rank, once per ``marker`` file.

    It waits ``settle_s`` first: Ray Train's controller takes a reported checkpoint when it
    next polls the workers (every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``), and a crash seen in
    the same poll wins, so a worker dying right after the report can lose the previous
    epoch's checkpoint and the restart repeats that epoch. The tests assert resumption from
    the checkpoint, so the crash comes once the controller has surely taken it.
    """

    marker: Path
    epoch: int
    settle_s: float = 3.0

    def __call__(self, epoch: int, rank: int, world: int) -> None:
        if epoch != self.epoch or rank != world - 1 or self.marker.exists():
            return
        time.sleep(self.settle_s)
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(f"failed at epoch {epoch}, pid {os.getpid()}\n")
        raise RuntimeError(f"injected failure at epoch {epoch} (test only)")


@dataclass
class WaitForNodeLoss:
    """At the start of ``epoch``, the last rank writes its Ray node id to ``marker`` and waits
    for the test to remove that node (which kills it); once per ``marker`` file.

    Like :class:`FailOnce`, it first waits ``settle_s`` so that the controller has taken the
    previous epoch's checkpoint.
    """

    marker: Path
    epoch: int
    settle_s: float = 3.0
    wait_s: float = 300.0

    def __call__(self, epoch: int, rank: int, world: int) -> None:
        if epoch != self.epoch or rank != world - 1 or self.marker.exists():
            return
        import ray

        time.sleep(self.settle_s)
        self.marker.write_text(ray.get_runtime_context().get_node_id())
        time.sleep(self.wait_s)  # the node goes away with this process long before
        raise RuntimeError(f"node of rank {rank} was not removed within {self.wait_s} s")


def fill_waiting_for_node_loss(marker: Path, shard: int, wait_s: float = 300.0) -> Any:
    """A stand-in for ``echoseek.index.build.fill_from_source`` (patched in a build's driver):
    the first attempt at shard ``shard`` writes its Ray node id to ``marker`` and waits for the
    test to remove that node (which kills it); every other call, and the retry, fills as usual.
    A function, not a callable object: ``ray.remote`` takes functions (a closure of this
    module, which ships by value)."""

    def fill(trained: Any, source: Any, plan: Any, *args: Any) -> Any:
        from echoseek.index.build import fill_from_source

        if plan.shard == shard and not marker.exists():
            import ray

            marker.write_text(ray.get_runtime_context().get_node_id())
            time.sleep(wait_s)
        return fill_from_source(trained, source, plan, *args)

    return fill
