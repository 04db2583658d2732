"""Index parameter choice: Flat for small corpora, IVF-PQ otherwise, by documented rules.

Rules for ``N`` vectors of dimension ``d`` (every value can be overridden):

* **Flat** (exact ``IndexFlatIP``/``IndexFlatL2`` behind an ``IDMap``) when
  ``N < flat_threshold`` (default 10 000): a brute-force scan of 10 k vectors costs well under a
  millisecond, needs no training, and IVF-PQ would have too few points per list to train
  (faiss wants ≥ 39 points per centroid).
* **IVF-PQ** ``IVF{nlist},PQ{M}x{nbits}`` otherwise (Jégou, Douze & Schmid, "Product
  quantization for nearest neighbor search", TPAMI 2011):

  - ``nlist = 2^round(log2(nlist_factor·√N))`` with ``nlist_factor = 4`` (the faiss guideline
    is 4–16·√N), clamped to ``[16, N / 39]`` so every list has enough training points;
    ``nlist ≥ 2^16`` uses an HNSW coarse quantizer (``IVF{nlist}_HNSW32``) so assigning a
    query to its lists stays sub-linear in ``nlist``;
  - ``M``: the largest divisor of ``d`` that is ``≤ d/4`` (≈ 4 dimensions per sub-quantizer)
    and whose code fits the memory budget: ``bytes/vector = M·nbits/8 + 8`` (code + int64 id),
    with the budget per vector ``(memory_budget − nlist·d·4) / N`` (centroids are float32);
  - ``nbits = 8`` (256 centroids per sub-quantizer);
  - ``opq`` prepends an OPQ rotation (Ge et al., "Optimized product quantization", TPAMI 2014)
    as ``OPQ{M},IVF…``;
  - training sample ``n_train = min(N, max_train, max(train_per_list·nlist, 39·2^nbits))``
    with ``train_per_list = 64`` (faiss asks for 30–256 points per centroid) and
    ``max_train = 2^23`` (4 GiB of float32 at d = 128);
  - consistent at every N: ``nlist ≤ min(N, max_train) / 39``, so the sample always holds
    at least 39 points per list (at 10^9 vectors: 2^17 lists, 2^23 = 64·2^17 samples);
  - ``nprobe = 2^round(log2(√nlist))`` (≤ nlist), the starting point only: ``index build``
    measures the smallest nprobe reaching recall@10 ≥ 0.9 (:mod:`echoseek.index.recall`)
    and writes that as the version's default; ``echoseek index eval target_recall=…``
    publishes a re-tuned version.

``metric="ip"`` is cosine similarity when ``normalize`` is on (the default for ``ip``): vectors
and queries are L2-normalised so that ``x·y = cos(x, y)``. ``metric="l2"`` is squared
Euclidean distance.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import faiss

from echoseek.errors import ConfigError

Metric = Literal["ip", "l2"]
Kind = Literal["auto", "flat", "ivfpq"]

FLAT_THRESHOLD = 10_000
NLIST_FACTOR = 4.0
TRAIN_PER_LIST = 64
MAX_TRAIN = 1 << 23
MIN_POINTS_PER_CENTROID = 39
HNSW_COARSE_FROM = 1 << 16
ID_BYTES = 8


@dataclass(frozen=True)
class IndexParams:
    """Everything needed to create, train and search one index version."""

    kind: Literal["flat", "ivfpq"]
    dim: int
    metric: Metric = "ip"
    normalize: bool = True
    nlist: int = 0
    m: int = 0
    nbits: int = 8
    opq: bool = False
    hnsw_coarse: bool = False
    nprobe: int = 1
    train_size: int = 0
    factory_override: str = ""

    @property
    def factory(self) -> str:
        """The faiss ``index_factory`` string, e.g. ``OPQ16,IVF1024,PQ16x8``."""
        if self.factory_override:
            return self.factory_override
        if self.kind == "flat":
            return "IDMap,Flat"
        coarse = f"IVF{self.nlist}_HNSW32" if self.hnsw_coarse else f"IVF{self.nlist}"
        prefix = f"OPQ{self.m}," if self.opq else ""
        return f"{prefix}{coarse},PQ{self.m}x{self.nbits}"

    @property
    def exact(self) -> bool:
        """True for a brute-force Flat index (its search is exact; nothing to re-rank)."""
        return self.factory.replace("IDMap2,", "").replace("IDMap,", "") == "Flat"

    @property
    def trained_bytes(self) -> int:
        """Estimated bytes of the trained empty index: float32 centroids (and the HNSW coarse
        quantizer's links), PQ codebooks, the OPQ matrix."""
        if self.kind == "flat":
            return 0
        centroids = self.nlist * self.dim * 4 + (self.nlist * 64 * 4 if self.hnsw_coarse else 0)
        codebooks = (1 << self.nbits) * self.dim * 4
        return centroids + codebooks + (self.dim * self.dim * 4 if self.opq else 0)

    @property
    def bytes_per_vector(self) -> float:
        """Estimated in-memory bytes per stored vector (code + id; centroids excluded)."""
        if self.kind == "flat":
            return 4.0 * self.dim + ID_BYTES
        return self.m * self.nbits / 8 + ID_BYTES

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in the manifest's ``params``)."""
        return {**dataclasses.asdict(self), "factory": self.factory}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexParams:
        """Inverse of :meth:`to_dict` (ignores the derived ``factory`` key)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def choose_params(
    n: int,
    dim: int,
    memory_budget_bytes: int | None = None,
    *,
    metric: Metric = "ip",
    kind: Kind = "auto",
    normalize: bool | None = None,
    nlist: int | None = None,
    m: int | None = None,
    nbits: int = 8,
    opq: bool = False,
    nprobe: int | None = None,
    train_size: int | None = None,
    flat_threshold: int = FLAT_THRESHOLD,
    nlist_factor: float = NLIST_FACTOR,
    train_per_list: int = TRAIN_PER_LIST,
    max_train: int = MAX_TRAIN,
    factory: str = "",
) -> IndexParams:
    """Pick index parameters for ``n`` vectors of dimension ``dim`` by the module's rules.

    Explicit keyword values win over the rules; an impossible combination (``m`` that does not
    divide ``dim``, a budget too small for any code) raises
    :class:`~echoseek.errors.ConfigError` naming the field.
    """
    _check_basics(n, dim, metric, nbits)
    norm = (metric == "ip") if normalize is None else normalize
    if factory:
        return _from_factory(factory, n, dim, metric, norm, nprobe, train_size, max_train)
    if kind == "flat" or (kind == "auto" and n < flat_threshold):
        return IndexParams(kind="flat", dim=dim, metric=metric, normalize=norm)
    lists = nlist if nlist else choose_nlist(n, nlist_factor, max_train)
    if lists > n:
        raise ConfigError(f"index.nlist: {lists} lists for only {n} vectors (use fewer lists)")
    budget = _budget_per_vector(memory_budget_bytes, n, lists, dim)
    sub = m if m else choose_m(dim, nbits, budget)
    if dim % sub:
        raise ConfigError(f"index.m: {sub} must divide the vector dimension {dim}")
    return IndexParams(
        kind="ivfpq",
        dim=dim,
        metric=metric,
        normalize=norm,
        nlist=lists,
        m=sub,
        nbits=nbits,
        opq=opq,
        hnsw_coarse=lists >= HNSW_COARSE_FROM,
        nprobe=min(lists, nprobe) if nprobe else default_nprobe(lists),
        train_size=train_size or choose_train_size(n, lists, nbits, train_per_list, max_train),
    )


def choose_nlist(n: int, factor: float = NLIST_FACTOR, max_train: int = MAX_TRAIN) -> int:
    """``2^round(log2(factor·√n))`` clamped to ``[16, min(n, max_train)/39]`` (power of two):
    the largest training sample still holds 39 points per list."""
    target = _pow2_round(factor * math.sqrt(n))
    most = _pow2_floor(max(1, min(n, max_train) // MIN_POINTS_PER_CENTROID))
    return max(1, min(max(16, target), most))


def choose_m(dim: int, nbits: int = 8, budget_per_vector: float | None = None) -> int:
    """Largest divisor ``M`` of ``dim`` with ``M ≤ dim/4`` whose code fits the budget."""
    cap = max(1, dim // 4)
    for sub in range(cap, 0, -1):
        if dim % sub:
            continue
        if budget_per_vector is None or sub * nbits / 8 + ID_BYTES <= budget_per_vector:
            return sub
    need = nbits / 8 + ID_BYTES
    raise ConfigError(
        f"index.memory_budget_bytes: {budget_per_vector:.1f} bytes per vector is below the "
        f"smallest IVF-PQ code ({need:.1f} bytes per vector)"
    )


def choose_train_size(
    n: int,
    nlist: int,
    nbits: int = 8,
    per_list: int = TRAIN_PER_LIST,
    max_train: int = MAX_TRAIN,
) -> int:
    """``min(n, max_train, max(per_list·nlist, 39·2^nbits))``."""
    wanted = max(per_list * nlist, MIN_POINTS_PER_CENTROID * (1 << nbits))
    return int(min(n, max_train, wanted))


def default_nprobe(nlist: int) -> int:
    """``2^round(log2(√nlist))``, at least 1 and at most ``nlist``."""
    return max(1, min(nlist, _pow2_round(math.sqrt(nlist))))


def _check_basics(n: int, dim: int, metric: str, nbits: int) -> None:
    if n <= 0:
        raise ConfigError(f"index: need at least one vector, got n={n}")
    if dim <= 0:
        raise ConfigError(f"index: vector dimension must be positive, got {dim}")
    if metric not in ("ip", "l2"):
        raise ConfigError(f"index.metric: must be 'ip' or 'l2', got {metric!r}")
    if not 1 <= nbits <= 16:
        raise ConfigError(f"index.nbits: must be in 1..16, got {nbits}")


def _budget_per_vector(budget: int | None, n: int, nlist: int, dim: int) -> float | None:
    if not budget:
        return None
    left = budget - nlist * dim * 4
    if left <= 0:
        raise ConfigError(
            f"index.memory_budget_bytes: {budget} bytes do not even hold the {nlist} centroids"
        )
    return left / n


def _from_factory(
    factory: str,
    n: int,
    dim: int,
    metric: Metric,
    normalize: bool,
    nprobe: int | None,
    train_size: int | None,
    max_train: int,
) -> IndexParams:
    """Params for an explicit faiss factory string (trained on up to ``max_train`` vectors)."""
    _check_factory(factory, dim, metric)
    lists = _parse_nlist(factory)
    kind: Literal["flat", "ivfpq"] = "ivfpq" if lists else "flat"
    return IndexParams(
        kind=kind,
        dim=dim,
        metric=metric,
        normalize=normalize,
        nlist=lists,
        nprobe=min(lists, nprobe) if (nprobe and lists) else default_nprobe(max(lists, 1)),
        train_size=train_size or min(n, max_train),
        factory_override=factory,
    )


def _check_factory(factory: str, dim: int, metric: Metric) -> None:
    """Refuse a factory string faiss cannot build for ``dim`` before anything is written."""
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    try:
        faiss.index_factory(dim, factory, faiss_metric)
    except RuntimeError as exc:  # faiss: "Error in <function> at <file>:<line>: <reason>"
        text = str(exc).strip()
        found = re.search(r" at \S+:\d+: (.+)", text)
        reason = (found.group(1) if found else text).splitlines()[0] if text else "invalid"
        raise ConfigError(
            f"index.factory: faiss cannot build '{factory}' for dimension {dim} ({reason})"
        ) from None


def _parse_nlist(factory: str) -> int:
    for part in factory.split(","):
        if part.startswith("IVF"):
            digits = "".join(ch for ch in part[3:].split("_")[0] if ch.isdigit())
            if digits:
                return int(digits)
    return 0


def _pow2_round(x: float) -> int:
    return 1 << max(0, round(math.log2(max(x, 1.0))))


def _pow2_floor(x: int) -> int:
    return 1 << max(0, math.floor(math.log2(max(x, 1))))
