"""Every check of a search request, in one place and one wording: ``FIELD: what is wrong``.

The HTTP layer runs these before anything reaches a shard (:func:`check_search`), so a bad
``k``, ``nprobe``, ``rerank``, batch or vector is a 400 naming its field whichever route it
came by (``/v1/search``, ``/v1/search/image``, ``/v1/search/batch``). The index reader keeps
only its internal contract checks (a programming error, not a client's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from echoseek.distances import resolve_params
from echoseek.errors import EchoseekError
from echoseek.service.images import QueryError


def check_k(k: Any, max_k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise QueryError(f"k: must be an integer in 1..{max_k}, got {k!r}")
    return k


def check_nprobe(nprobe: Any) -> int | None:
    if nprobe is not None and (
        isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1
    ):
        raise QueryError(f"nprobe: must be a positive integer or null, got {nprobe!r}")
    return nprobe


def check_rerank(rerank: Any) -> str | bool | None:
    """``None`` (the version's default), a bool, or a distance name with its parameters."""
    if isinstance(rerank, str):
        try:
            resolve_params(rerank)
        except EchoseekError as exc:  # "distance: unknown name ..." -> "rerank: unknown ..."
            raise QueryError(f"rerank: {str(exc).removeprefix('distance: ')}") from None
    elif rerank is not None and not isinstance(rerank, bool):
        raise QueryError(f"rerank: expected a distance name, true, false or null, got {rerank!r}")
    return rerank


def check_vector(values: Any, dim: int, field: str = "vector") -> np.ndarray:
    """One query vector as ``dim`` finite float32 numbers, not all zero."""
    try:
        with np.errstate(over="ignore"):  # too large for float32: inf, refused below
            v = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise QueryError(f"{field}: expected a list of numbers") from None
    if v.ndim != 1 or v.shape[0] != dim:
        got = v.shape[0] if v.ndim == 1 else v.size
        raise QueryError(f"{field}: expected {dim} numbers, got {got}")
    if not np.isfinite(v).all():
        raise QueryError(f"{field}: contains NaN or infinite values (or values too large)")
    if not np.abs(v).sum() > 0:
        raise QueryError(f"{field}: is all zeros")
    return v


def check_batch(count: int, max_batch: int) -> None:
    if count > max_batch:
        raise QueryError(f"queries: at most {max_batch} per batch, got {count}")


def check_one_of(field: str, vector: Any, image: Any, item: Any) -> None:
    """A query gives exactly one of a vector, an image or a stored item's id."""
    if sum(x is not None for x in (vector, image, item)) != 1:
        raise QueryError(f"{field}: give exactly one of 'vector', 'image' or 'id'")


def check_search(k: Any, nprobe: Any, rerank: Any, max_k: int) -> None:
    """The options every search route takes."""
    check_k(k, max_k)
    check_nprobe(nprobe)
    check_rerank(rerank)
