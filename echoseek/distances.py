"""Distances shared by the FastAP loss and the search re-rank.

Every function here returns a **dissimilarity**: lower means more similar, 0 is a perfect match.
Names (:data:`NAMES`) and their parameters:

``cosine``
    ``1 − x·y / (‖x‖₂‖y‖₂)``; in [0, 2] for any non-zero vectors.
``sqeuclidean``
    ``‖x − y‖₂²``; in [0, 4] on the unit sphere.
``minkowski`` (``p``, default 2; ``p > 0``, ``float("inf")`` is Chebyshev)
    ``‖x − y‖_p``; on the unit sphere in [0, 2] for ``p ≥ 2`` and in [0, 2·d^(1/p − 1/2)] for
    ``p < 2`` (see :func:`distance_range`).
``soart3_yita``, ``soart3_gamma`` (``p``, default 4; ``p ≥ 1``, ``float("inf")`` allowed)
    SOART3 from the team's Siamese-network notes. For a query ``y`` and a
    reference ``x``::

        β = (x·y + ε) / (x·x + ε),   ε = 1e-4
        r = y − β x                  (the part of y that x does not explain)
        yita  = log(1 + ‖r‖₁)
        gamma = yita − log(1 + ‖r‖_p)

    Both are asymmetric: ``pairwise(Q, R)[i, j]`` takes ``y = Q[i]`` and ``x = R[j]``.
    ``gamma ≥ 0`` because ``‖r‖_p ≤ ‖r‖₁`` for ``p ≥ 1`` (it can read −1 ulp in floating point),
    and it is 0 both for a perfect match and for a residual along one coordinate axis.

Three entry points share one implementation: :func:`pairwise` (Q×R, batched, differentiable),
:func:`rowwise` (N pairs) and :func:`pairwise_numpy` (serving; no autograd). SOART3 needs a
residual per pair (Q×R×d numbers), so it is computed over tiles of queries × references, never
all at once. When a gradient is needed, tiles fit :data:`BLOCK_BYTES` and are checkpointed, so
backward also holds one tile at a time; without autograd, one cache-sized scratch tile
(:data:`CACHE_BYTES`) is reused and overwritten in place, which is several times faster.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from echoseek.distance_params import DEFAULT_PARAMS as DEFAULT_PARAMS  # re-exported
from echoseek.distance_params import NAMES as NAMES  # re-exported
from echoseek.distance_params import resolve_params
from echoseek.errors import ConfigError, InputError

SOART3_EPS = 1e-4
"""ε in SOART3's β = (x·y + ε)/(x·x + ε)."""

BLOCK_BYTES = 64 * 2**20
"""With autograd: working-memory budget of one SOART3 tile (all its Qb×Rb×d temporaries)."""

CACHE_BYTES = 4 * 2**20
"""Without autograd: size of the one reused SOART3 scratch tile (kept cache-resident)."""

_BLOCK_TEMPORARIES = 4  # residual, |residual| and the norm reductions' scratch, with headroom


def pairwise(queries: Tensor, refs: Tensor, name: str, **params: float) -> Tensor:
    """All query–reference dissimilarities: ``out[i, j] = D(y=queries[i], x=refs[j])``.

    ``queries`` is Q×d, ``refs`` R×d; returns Q×R in the promoted floating dtype. Batched and
    differentiable; lower is more similar. ``params`` are the distance's (``p``), see
    :data:`DEFAULT_PARAMS`.
    """
    kwargs = resolve_params(name, **params)
    q, r = _check_matrices(queries, refs, "queries", "refs")
    return _PAIRWISE[name](q, r, **kwargs)


def rowwise(a: Tensor, b: Tensor, name: str, **params: float) -> Tensor:
    """Dissimilarity of each row pair: ``out[i] = D(y=a[i], x=b[i])``; a, b N×d → N."""
    kwargs = resolve_params(name, **params)
    y, x = _check_matrices(a, b, "a", "b")
    if y.shape[0] != x.shape[0]:
        raise InputError(f"rowwise: a has {y.shape[0]} rows but b has {x.shape[0]}")
    return _ROWWISE[name](y, x, **kwargs)


def pairwise_numpy(queries: np.ndarray, refs: np.ndarray, name: str, **params: float) -> np.ndarray:
    """:func:`pairwise` for NumPy arrays (serving path, no autograd).

    float64 inputs stay float64; anything else (float16 stored vectors, integers) is computed in
    float32. Returns a Q×R array.
    """
    q = torch.from_numpy(_as_float_array(queries, "queries"))
    r = torch.from_numpy(_as_float_array(refs, "refs"))
    with torch.no_grad():
        return pairwise(q, r, name, **params).numpy()


def similarity_numpy(
    queries: np.ndarray, refs: np.ndarray, name: str = "", **params: float
) -> np.ndarray:
    """Higher-is-better Q×R scores for ranking: ``q·x`` when ``name`` is empty (cosine for
    L2-normalised rows), else ``−d(q, x)`` with :func:`pairwise_numpy` (an exact ranking by
    any distance, as an exhaustive re-rank gives)."""
    if not name:
        return np.asarray(queries @ refs.T)
    return -pairwise_numpy(queries, refs, name, **params)


def distance_range(name: str, dim: int, **params: float) -> tuple[float, float]:
    """``(low, high)`` bounds of a distance between unit vectors of dimension ``dim``.

    Derivations (x, y on the unit sphere in R^d, z = x − y, so ‖z‖₂ ≤ 2):

    - cosine: 1 − cos θ ∈ [0, 2]; sqeuclidean: ‖z‖₂² = 2 − 2cos θ ∈ [0, 4].
    - minkowski, p ≥ 2 (and ∞): ‖z‖_p ≤ ‖z‖₂ ≤ 2, attained by x = e₁, y = −e₁.
      p < 2: ‖z‖_p ≤ d^(1/p − 1/2)‖z‖₂ (power-mean inequality), so the maximum is
      2·d^(1/p − 1/2), attained by x = −y = (1, …, 1)/√d.
    - SOART3: with c = x·y, β = (c + ε)/(1 + ε) and ‖r‖₂² = 1 − 2βc + β², a concave quadratic
      in c whose maximum is R² = 1 + ε²/(1 + 2ε) (R − 1 ≈ 5e-9). Then ‖r‖₁ ≤ √d·R, so
      yita ∈ [0, log(1 + √d·R)], approached when r ∝ (±1, …, ±1).
      gamma = log((1 + ‖r‖₁)/(1 + ‖r‖_p)) ≥ 0. For p ≥ 2 the flat residual r = R(±1, …)/√d
      maximises ‖r‖₁ and minimises ‖r‖_p (= d^(1/p − 1/2)‖r‖₂) at once and the ratio grows with
      ‖r‖₂, so the tight bound is log((1 + √d·R)/(1 + d^(1/p − 1/2)·R)). For 1 < p < 2 we use
      ‖r‖_p ≥ ‖r‖₂, giving the valid but not attained bound log((1 + √d·R)/(1 + R)). For p = 1
      gamma is identically 0.
    """
    kwargs = resolve_params(name, **params)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"distance_range: dim must be a positive integer, got {dim!r}")
    if name == "cosine":
        return 0.0, 2.0
    if name == "sqeuclidean":
        return 0.0, 4.0
    if name == "minkowski":
        p = kwargs["p"]
        return 0.0, 2.0 if p >= 2 else 2.0 * dim ** (1.0 / p - 0.5)
    radius = math.sqrt(1.0 + SOART3_EPS**2 / (1.0 + 2.0 * SOART3_EPS))
    l1_max = math.sqrt(dim) * radius
    if name == "soart3_yita":
        return 0.0, math.log1p(l1_max)
    p = kwargs["p"]
    if p == 1:
        return 0.0, 0.0
    lp_min = dim ** (1.0 / p - 0.5) * radius if p >= 2 else radius
    return 0.0, math.log1p(l1_max) - math.log1p(lp_min)


# ---------------------------------------------------------------------------------------------
# Kernels. Pairwise ones take Q×d, R×d and return Q×R; row-wise ones take N×d, N×d → N.


def _cosine_pairwise(q: Tensor, r: Tensor) -> Tensor:
    return 1.0 - F.normalize(q, dim=1) @ F.normalize(r, dim=1).T  # QxR


def _cosine_rowwise(y: Tensor, x: Tensor) -> Tensor:
    return 1.0 - (F.normalize(y, dim=1) * F.normalize(x, dim=1)).sum(1)  # N


def _sqeuclidean_pairwise(q: Tensor, r: Tensor) -> Tensor:
    """‖q‖² + ‖r‖² − 2 q·r, clamped at 0 against rounding (smooth, unlike a sqrt-based form)."""
    qq = q.pow(2).sum(1, keepdim=True)  # Qx1
    rr = r.pow(2).sum(1)  # R
    return (qq + rr - 2.0 * (q @ r.T)).clamp_min(0.0)  # QxR


def _sqeuclidean_rowwise(y: Tensor, x: Tensor) -> Tensor:
    return (y - x).pow(2).sum(1)  # N


def _minkowski_pairwise(q: Tensor, r: Tensor, p: float) -> Tensor:
    return torch.cdist(q, r, p=p)  # QxR; gradient 0 (not NaN) at coincident points


def _minkowski_rowwise(y: Tensor, x: Tensor, p: float) -> Tensor:
    return torch.linalg.vector_norm(y - x, ord=p, dim=1)  # N


def _soart3(y: Tensor, x: Tensor, dot: Tensor, xx: Tensor, p: float | None) -> Tensor:
    """Differentiable SOART3 on broadcastable operands: y, x (..., d); dot = x·y, xx = x·x (...).

    ``p=None`` gives yita, a number gives gamma with that p.
    """
    beta = (dot + SOART3_EPS) / (xx + SOART3_EPS)  # ...
    residual = torch.addcmul(y, beta.unsqueeze(-1), x, value=-1.0)  # ...xd, y − βx
    yita = torch.log1p(residual.abs().sum(-1))  # ...
    if p is None:
        return yita
    return yita - torch.log1p(torch.linalg.vector_norm(residual, ord=p, dim=-1))


def _soart3_block(q: Tensor, r: Tensor, rr: Tensor, p: float | None) -> Tensor:
    return _soart3(q.unsqueeze(1), r.unsqueeze(0), q @ r.T, rr, p)  # QbxRb


def _soart3_tile_(q: Tensor, r: Tensor, rr: Tensor, p: float | None, scratch: Tensor) -> Tensor:
    """No-grad SOART3 for one tile, computed in place in ``scratch`` (Qb×Rb×d, overwritten).

    The same arithmetic as :func:`_soart3`, but with no temporaries per tile: a cache-sized
    scratch buffer is reused, which makes inference several times faster.
    """
    beta = torch.addmm(rr.new_full((), SOART3_EPS), q, r.T).div_(rr + SOART3_EPS)  # QbxRb
    mag = torch.addcmul(q.unsqueeze(1), beta.unsqueeze(-1), r.unsqueeze(0), value=-1.0, out=scratch)
    mag.abs_()  # QbxRbxd, |y − βx|
    yita = mag.sum(-1).log1p_()  # QbxRb
    if p is None:
        return yita
    return yita.sub_(_pnorm_of_magnitudes_(mag, p).log1p_())


def _pnorm_of_magnitudes_(mag: Tensor, p: float) -> Tensor:
    """‖·‖_p over the last dim of non-negative ``mag`` (overwritten); integer powers by squaring."""
    if p == math.inf:
        return mag.amax(-1)
    if p == 2:
        return mag.square_().sum(-1).sqrt_()
    if p == 4:
        return mag.square_().square_().sum(-1).sqrt_().sqrt_()
    return mag.pow_(p).sum(-1).pow_(1.0 / p)


def _tile_shape(num_q: int, num_r: int, row_bytes: int, budget: int) -> tuple[int, int]:
    """Tile (rows, cols) with rows·cols·row_bytes ≤ budget (at least 1×1)."""
    cols = max(1, min(num_r, budget // row_bytes))
    rows = max(1, min(num_q, budget // (cols * row_bytes)))
    return rows, cols


def _soart3_pairwise(
    q: Tensor,
    r: Tensor,
    p: float | None,
    block_bytes: int = BLOCK_BYTES,
    cache_bytes: int = CACHE_BYTES,
) -> Tensor:
    """SOART3 Q×R over tiles of queries × references, so no Q×R×d tensor is ever built.

    With autograd, tiles are sized by ``block_bytes`` (all temporaries together) and, when there
    is more than one, checkpointed. Without autograd, tiles are sized by ``cache_bytes`` and
    computed in place in one reused scratch buffer.
    """
    num_q, num_r, dim = q.shape[0], r.shape[0], q.shape[1]
    rr = r.pow(2).sum(1)  # R
    if num_q == 0 or num_r == 0:
        return q.new_zeros(num_q, num_r)
    row_bytes = max(1, dim) * q.element_size()
    if torch.is_grad_enabled() and (q.requires_grad or r.requires_grad):
        rows, cols = _tile_shape(num_q, num_r, _BLOCK_TEMPORARIES * row_bytes, block_bytes)
        tiled = rows < num_q or cols < num_r
        out_rows = []
        for i in range(0, num_q, rows):
            parts = []
            for j in range(0, num_r, cols):
                args = (q[i : i + rows], r[j : j + cols], rr[j : j + cols], p)
                if tiled:
                    parts.append(checkpoint(_soart3_block, *args, use_reentrant=False))
                else:
                    parts.append(_soart3_block(*args))
            out_rows.append(torch.cat(parts, dim=1))
        return torch.cat(out_rows)  # QxR
    with torch.no_grad():
        rows, cols = _tile_shape(num_q, num_r, row_bytes, cache_bytes)
        out = q.new_empty(num_q, num_r)
        scratch = q.new_empty(rows * cols * dim)
        for i in range(0, num_q, rows):
            for j in range(0, num_r, cols):
                qi, rj = q[i : i + rows], r[j : j + cols]
                tile = scratch[: len(qi) * len(rj) * dim].view(len(qi), len(rj), dim)
                out[i : i + len(qi), j : j + len(rj)] = _soart3_tile_(
                    qi, rj, rr[j : j + cols], p, tile
                )
        return out  # QxR


def _soart3_rowwise(y: Tensor, x: Tensor, p: float | None) -> Tensor:
    return _soart3(y, x, (y * x).sum(1), x.pow(2).sum(1), p)  # N


def _soart3_yita_pairwise(q: Tensor, r: Tensor) -> Tensor:
    return _soart3_pairwise(q, r, None)


def _soart3_gamma_pairwise(q: Tensor, r: Tensor, p: float) -> Tensor:
    return _soart3_pairwise(q, r, p)


def _soart3_yita_rowwise(y: Tensor, x: Tensor) -> Tensor:
    return _soart3_rowwise(y, x, None)


def _soart3_gamma_rowwise(y: Tensor, x: Tensor, p: float) -> Tensor:
    return _soart3_rowwise(y, x, p)


_PAIRWISE: dict[str, Callable[..., Tensor]] = {
    "cosine": _cosine_pairwise,
    "sqeuclidean": _sqeuclidean_pairwise,
    "minkowski": _minkowski_pairwise,
    "soart3_yita": _soart3_yita_pairwise,
    "soart3_gamma": _soart3_gamma_pairwise,
}

_ROWWISE: dict[str, Callable[..., Tensor]] = {
    "cosine": _cosine_rowwise,
    "sqeuclidean": _sqeuclidean_rowwise,
    "minkowski": _minkowski_rowwise,
    "soart3_yita": _soart3_yita_rowwise,
    "soart3_gamma": _soart3_gamma_rowwise,
}


# ---------------------------------------------------------------------------------------------
# Input checks.


def _check_matrices(a: Tensor, b: Tensor, a_name: str, b_name: str) -> tuple[Tensor, Tensor]:
    for t, label in ((a, a_name), (b, b_name)):
        if not isinstance(t, Tensor):
            raise InputError(f"{label}: expected a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 2:
            raise InputError(
                f"{label}: expected a 2-D (rows x dim) tensor, got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise InputError(f"{label}: expected a floating-point tensor, got {t.dtype}")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"{a_name} have dim {a.shape[1]} but {b_name} have dim {b.shape[1]}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def _as_float_array(array: np.ndarray, label: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{label}: expected a numeric array, got dtype {arr.dtype}")
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    return np.ascontiguousarray(arr, dtype=dtype)
