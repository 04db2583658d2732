"""Distance names and their parameters, without torch (:mod:`echoseek.distances` computes them).

A process that only validates a name, such as an index reader choosing its re-rank, or a
build task, does not pay for importing torch (about 450 MB of resident memory per process).
"""

from __future__ import annotations

import math

from echoseek.errors import ConfigError

NAMES: tuple[str, ...] = ("cosine", "sqeuclidean", "minkowski", "soart3_yita", "soart3_gamma")
"""Every distance name accepted by :func:`pairwise`, :func:`rowwise` and :func:`distance_range`."""

DEFAULT_PARAMS: dict[str, dict[str, float]] = {
    "cosine": {},
    "sqeuclidean": {},
    "minkowski": {"p": 2.0},
    "soart3_yita": {},
    "soart3_gamma": {"p": 4.0},
}
"""The parameters each distance accepts, with their defaults."""


def resolve_params(name: str, **params: float) -> dict[str, float]:
    """Check ``name`` and its parameters; return the parameters with defaults filled in.

    Raises :class:`~echoseek.errors.ConfigError` for an unknown name, an unknown parameter or a
    ``p`` out of range (``p > 0`` for minkowski, ``p ≥ 1`` for SOART3 so that ‖·‖_p is a norm).
    """
    if name not in DEFAULT_PARAMS:
        raise ConfigError(f"distance: unknown name {name!r} (known: {', '.join(NAMES)})")
    accepted = DEFAULT_PARAMS[name]
    for key in params:
        if key not in accepted:
            takes = f"accepts only {', '.join(accepted)}" if accepted else "takes no parameters"
            raise ConfigError(f"distance {name!r}: unknown parameter {key!r} ({name} {takes})")
    resolved = {**accepted, **params}
    if "p" in resolved:
        resolved["p"] = _check_p(name, resolved["p"])
    return resolved


def _check_p(name: str, value: object) -> float:
    try:
        p = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"distance {name!r}: p must be a number, got {value!r}") from None
    low, strict = (0.0, True) if name == "minkowski" else (1.0, False)
    if math.isnan(p) or p < low or (strict and p == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ConfigError(f"distance {name!r}: p must be {bound} (or inf), got {value!r}")
    return p
