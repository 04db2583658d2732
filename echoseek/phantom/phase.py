"""Respiratory-phase classes of a phantom cine: training labels that transfer across subjects.

The breath-hold labels (``dataset_labels.csv``) say whether a frame matches *this* cine's
reference frame. A model trained on them learns one subject's reference depth, which says
little about another subject's. What does transfer is "same respiratory displacement, same
view", so the phantom also writes phase classes for training (``dataset_phase_labels.csv``):

    class(i) = round((phase[i] - reference) / (bin_width * tolerance)) - min over frames
                                                  for frames with an unchanged view
    class(i) = n_phase_classes + e                for frames of hard-negative episode e

Bins are ``bin_width`` tolerances wide and centred on the reference, so every positive frame
lies in one class (with its nearest neighbours in phase). Each probe-shift or rib-sweep
episode is a class of its own: its view differs from the unchanged frames at any phase.
"""

from __future__ import annotations

import numpy as np

from echoseek.errors import ConfigError
from echoseek.phantom.episodes import Episode


def phase_classes(
    phase: np.ndarray,
    reference: float,
    tolerance: float,
    episodes: tuple[Episode, ...],
    bin_width: float,
) -> np.ndarray:
    """(N,) int64 class of every frame, as in the module docstring."""
    if not bin_width > 0 or not tolerance > 0:
        raise ConfigError(f"phase_bin: must be > 0 (and the tolerance too), got {bin_width}")
    bins = np.rint((np.asarray(phase, dtype=np.float64) - reference) / (bin_width * tolerance))
    classes = (bins - bins.min()).astype(np.int64)
    first_episode_class = int(classes.max()) + 1
    for e, episode in enumerate(episodes):
        classes[episode.start : episode.stop] = first_episode_class + e
    return classes
