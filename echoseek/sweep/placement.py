"""Give back a stopped trial's Ray Train placement group.

When Tune stops a trial early (ASHA) it kills the trial's actor, and with it the Train
controller that would have removed its workers' placement group; Train's detached cleaner
only notices through the dashboard's state API, which a local session runs without. The
placement group then holds its CPUs until the sweep ends, and the next trials wait for them
forever. Rank 0 reports its placement group with every epoch
(:data:`echoseek.training.checkpoint.PLACEMENT_GROUP`); this callback removes it once its trial is
over.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from echoseek.training.checkpoint import PLACEMENT_GROUP


class ReleasePlacementGroups(Callback):  # type: ignore[misc]
    """Tune callback on the sweep driver: remove a finished trial's Train placement group."""

    def __init__(self) -> None:
        self.groups: dict[str, set[str]] = {}

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if result.get(PLACEMENT_GROUP):
            self.groups.setdefault(trial.trial_id, set()).add(str(result[PLACEMENT_GROUP]))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.release(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.release(trial.trial_id)

    def release(self, trial_id: str) -> None:
        """Remove the trial's placement groups that still exist."""
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import (
            PlacementGroup,
            placement_group_table,
            remove_placement_group,
        )

        for hex_id in self.groups.pop(trial_id, set()):
            group = PlacementGroup(PlacementGroupID(bytes.fromhex(hex_id)))
            if placement_group_table(group).get("state") not in (None, "REMOVED"):
                remove_placement_group(group)
