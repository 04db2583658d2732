"""Search spaces: the YAML ``space:`` of a sweep, checked against the job's config, as Tune.

A space maps a dotted field of the trial's job config to one distribution::

    space:
      loss.distance: {choice: [cosine, sqeuclidean, soart3_gamma]}
      loss.distance_params.p: {grid: [1, 2, 4, .inf]}
      optim.lr: {loguniform: [1.0e-4, 1.0e-2]}
      loss.m: {randint: [2, 9]}          # 2..8 (high exclusive, as Tune's randint)
      augment.crop_scale_min: {quniform: [0.1, 0.9, 0.1]}
      # a key naming several fields: one drawn value for all, or a list of one value per field
      augment.brightness,augment.contrast: {grid: [0.0, 0.4, 0.8]}
      loss.distance,loss.distance_params: {choice: [[cosine, {}], [soart3_gamma, {p: 1}]]}

:func:`parse_space` validates the shape, :func:`check_space` builds the job config with every
value a trial could draw at the edges (each choice, each range's ends) so a bad field or value
fails before any trial starts, naming the field, and :func:`to_tune` is the one place that
knows Tune's sampling API.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from echoseek.errors import ConfigError

KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")


@dataclass(frozen=True)
class Param:
    """One searched field: ``kind`` from :data:`KINDS` and its arguments (values or bounds)."""

    key: str
    kind: str
    args: tuple[Any, ...]

    def edge_values(self) -> list[Any]:
        """Every value a choice or grid can take; a range's two ends (randint: high - 1)."""
        if self.kind in ("choice", "grid"):
            return list(self.args)
        low, high = self.args[0], self.args[1]
        return [low, high - 1] if self.kind == "randint" else [low, high]


def parse_space(raw: Any) -> dict[str, Param]:
    """``{field: {kind: args}}`` -> :class:`Param` per field, with clear errors."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("space: expected a non-empty mapping of field: {kind: values}")
    return {str(key): _param(str(key), spec) for key, spec in raw.items()}


def _param(key: str, spec: Any) -> Param:
    where = f"space.{key}"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigError(f"{where}: expected one of {{{', '.join(KINDS)}: ...}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind '{kind}' (known: {', '.join(KINDS)})")
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {args!r}")
    if kind in ("choice", "grid"):
        return Param(key, kind, tuple(args))
    size = 3 if kind == "quniform" else 2
    if len(args) != size or not all(_is_number(a) for a in args):
        shape = "[low, high, q]" if size == 3 else "[low, high]"
        raise ConfigError(f"{where}.{kind}: expected {shape} numbers, got {args!r}")
    low, high = float(args[0]), float(args[1])
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low must be below high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.loguniform: bounds must be positive, got {args!r}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise ConfigError(f"{where}.randint: expected integer bounds, got {args!r}")
    if kind == "quniform" and not float(args[2]) > 0:
        raise ConfigError(f"{where}.quniform: q must be positive, got {args[2]!r}")
    return Param(key, kind, tuple(args))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_space(space: Mapping[str, Param], build: Callable[[Mapping[str, Any]], Any]) -> None:
    """Build the trial config (``build(overrides)``) with every edge value of every field,
    so an unknown field, a wrong type or a value the job rejects fails now, naming the field."""
    for key, param in space.items():
        for value in param.edge_values():
            try:
                build({key: value})
            except ConfigError as exc:
                raise ConfigError(f"space.{key}: {value!r} is refused by the job ({exc})") from None


def has_grid(space: Mapping[str, Param]) -> bool:
    """Whether any field is a ``grid`` (every value is tried, in every combination)."""
    return any(p.kind == "grid" for p in space.values())


JSON_PREFIX = "json:"


def encode(value: Any) -> Any:
    """A choice value as a search algorithm can hold it: scalars as they are, a list or mapping
    (one value per field of a comma key) as ``"json:<JSON>"`` (Optuna takes only scalars)."""
    if isinstance(value, (list, tuple, dict)):
        return JSON_PREFIX + json.dumps(value)
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, str) and value.startswith(JSON_PREFIX):
        return json.loads(value[len(JSON_PREFIX) :])
    return value


def to_tune(space: Mapping[str, Param]) -> dict[str, Any]:
    """The space as Tune sampling objects, keyed by the dotted field."""
    from ray import tune

    make: dict[str, Callable[..., Any]] = {
        "choice": lambda *a: tune.choice([encode(v) for v in a]),
        "grid": lambda *a: tune.grid_search([encode(v) for v in a]),
        "uniform": tune.uniform,
        "loguniform": tune.loguniform,
        "randint": tune.randint,
        "quniform": tune.quniform,
    }
    return {key: make[p.kind](*p.args) for key, p in space.items()}
