"""Training checkpoints that resume a run and load without unpickling arbitrary objects.

A checkpoint is a directory with two files, written together (staging dir, then rename):

- ``state.pt``: ``torch.save`` of a dict holding only tensors, primitives and containers of
  them: ``{"format_version", "model", "optimizer", "scheduler"?, "scaler"?}`` (state dicts).
  It loads with ``torch.load(weights_only=True)``.
- ``state.json``: ``{"format", "format_version", "epoch", "metrics", "extra"}``, readable
  without torch (by convention ``epoch`` is the number of completed epochs).

Model keys are those of the unwrapped model (no ``module.`` or ``_orig_mod.`` prefixes), so a
checkpoint of a DDP or compiled model loads into a plain one and back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from echoseek.errors import InputError
from echoseek.models.state_dict import state_dict_mismatch
from echoseek.storage import read_json_document, staged_dir
from echoseek.training.unwrap import unwrap_model

STATE_FILE = "state.pt"
INFO_FILE = "state.json"
FORMAT = "echoseek-train-state"
FORMAT_VERSION = 1

_PRIMITIVES = (bool, int, float, str, type(None), torch.Tensor, torch.dtype, torch.device)


class Stateful(Protocol):
    """Anything with ``state_dict``/``load_state_dict``: lr schedulers, GradScaler."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


def save_state(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    scheduler: Stateful | None = None,
    scaler: Stateful | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``state.pt`` + ``state.json`` into ``directory``, replacing it as a whole.

    The directory belongs to the checkpoint: an existing one (e.g. an empty temporary dir for
    a Ray Train checkpoint, or the previous checkpoint) is replaced only once the new one is
    complete. ``metrics`` and ``extra`` must be JSON-serialisable.
    """
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
    }
    try:
        info_text = json.dumps(info, indent=2) + "\n"
    except (TypeError, ValueError) as exc:
        raise TypeError(f"save_state: metrics/extra must be JSON-serialisable ({exc})") from None
    state: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
    }
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    _check_plain(state, "state")
    with staged_dir(directory, overwrite=True) as staging:
        torch.save(state, staging / STATE_FILE)
        (staging / INFO_FILE).write_text(info_text)
    return Path(directory)


def load_state(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Stateful | None = None,
    scaler: Stateful | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Restore the given components from a checkpoint; returns ``{"epoch", "metrics", "extra"}``.

    The model (wrapped or not) must match the saved architecture. An optimizer or scheduler
    passed here must be in the checkpoint; a scaler absent from it keeps its fresh state (its
    scale recalibrates in a few steps). Missing, corrupt, unsafe or mismatching files raise
    InputError naming the file.
    """
    directory = Path(directory)
    info = read_json_document(
        directory / INFO_FILE, FORMAT, FORMAT_VERSION, f"no {INFO_FILE} (not a training checkpoint)"
    )
    if not isinstance(info.get("epoch"), int) or not all(
        isinstance(info.get(k), dict) for k in ("metrics", "extra")
    ):
        raise InputError(f"{directory / INFO_FILE}: needs an integer epoch, metrics and extra")
    path = directory / STATE_FILE
    state = _read_state(path, map_location)
    plain = unwrap_model(model)
    problem = state_dict_mismatch(state["model"], plain.state_dict())
    if problem:
        raise InputError(f"{path}: model does not match the checkpoint: {problem}")
    plain.load_state_dict(state["model"])
    for name, component in (("optimizer", optimizer), ("scheduler", scheduler)):
        if component is not None and name not in state:
            raise InputError(f"{path}: has no {name} state")
    if optimizer is not None:
        _load_component(optimizer, state["optimizer"], f"{path}: optimizer")
    if scheduler is not None:
        _load_component(scheduler, state["scheduler"], f"{path}: scheduler")
    if scaler is not None and "scaler" in state:
        _load_component(scaler, state["scaler"], f"{path}: scaler")
    return {"epoch": info["epoch"], "metrics": info["metrics"], "extra": info["extra"]}


def _read_state(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with every failure as InputError naming ``path``."""
    if not path.is_file():
        raise InputError(f"{path}: not found")
    try:
        state: Any = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        text = str(exc).strip().splitlines()
        raise InputError(
            f"{path}: not a loadable checkpoint ({text[0] if text else exc!r})"
        ) from None
    if (
        not isinstance(state, dict)
        or state.get("format_version") != FORMAT_VERSION
        or not isinstance(state.get("model"), Mapping)
    ):
        raise InputError(f"{path}: not an echoseek training state (format {FORMAT_VERSION})")
    return state


def _load_component(component: Any, state: Any, where: str) -> None:
    try:
        component.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise InputError(f"{where} does not match the checkpoint ({exc})") from None


def _check_plain(obj: Any, where: str) -> None:
    """Raise TypeError if ``obj`` holds anything ``torch.load(weights_only=True)`` refuses."""
    if isinstance(obj, _PRIMITIVES):
        return
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _check_plain(key, f"{where} key")
            _check_plain(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    else:
        raise TypeError(
            f"{where} is a {type(obj).__name__}: a checkpoint holds only tensors and primitives "
            "(it must load with torch.load(weights_only=True))"
        )
