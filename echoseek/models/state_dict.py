"""Reading and checking plain state dicts (no arbitrary unpickling)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from echoseek.errors import InputError


def read_state_dict(
    path: Path, map_location: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Load ``path`` with ``torch.load(weights_only=True)`` and check it maps names to tensors.

    A checkpoint of the form ``{"state_dict": {...}}`` is unwrapped. Missing, corrupt or unsafe
    files (a pickle carrying arbitrary objects) raise InputError naming the file.
    """
    if not path.is_file():
        raise InputError(f"{path}: not found")
    try:
        state: Any = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise InputError(f"{path}: not a loadable state dict ({_first_line(exc)})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InputError(f"{path}: expected a state dict (names -> tensors)")
    return dict(state)


def state_dict_mismatch(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    optional: frozenset[str] = frozenset(),
) -> str:
    """A one-line description of the first key or shape difference, or '' when they agree.

    Keys in ``optional`` may be absent from ``state``.
    """
    missing = sorted(set(expected) - set(state) - optional)
    if missing:
        return f"missing '{missing[0]}' ({len(missing)} missing)"
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        return f"unexpected '{unexpected[0]}' ({len(unexpected)} unexpected)"
    for key, value in state.items():
        if value.shape != expected[key].shape:
            return f"'{key}' has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
    return ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
