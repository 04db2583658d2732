"""The search service's logic, shared by the Ray Serve ingress and the in-process server.

A :class:`Backend` answers the HTTP layer (:mod:`echoseek.service.http`): it checks queries,
fans a search out to every shard group, merges their hits, and swaps index versions. Only how
a shard group or the embedder is called differs: :class:`LocalBackend` calls them in this
process (``echoseek serve local=true``, and the single-process peer in ``bench/``); the Serve
ingress (:mod:`echoseek.service.deployments`) calls deployments through their handles.

Every request reads ``self.served`` once, so it searches one version from start to end; a swap
loads and verifies the new version, warms every group, and then replaces ``self.served`` in
one assignment. A group that fails is tried up to three times; if it still fails, the request
is answered 503, or, when the request allows it (``partial``), marked partial with the missing
shards.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from echoseek.embedding import build_embedder
from echoseek.errors import EchoseekError, InputError
from echoseek.index.tasks import resident_bytes
from echoseek.service.config import ServiceConfig
from echoseek.service.feedback import FeedbackLog, Mark, default_path, now
from echoseek.service.images import QueryError
from echoseek.service.node_copy import node_cache
from echoseek.service.prometheus import ServiceMetrics
from echoseek.service.searcher import ShardGroup, merge_hits
from echoseek.service.thumbnails import Thumbnails
from echoseek.service.versions import Served, check_replaceable, load_served

log = logging.getLogger("echoseek.service")
ATTEMPTS = 3  # a failed shard call is retried (Serve routes it to a healthy replica)


class Backend(abc.ABC):
    """Search, lookup and swap over ``groups`` shard groups of the versions under the root."""

    def __init__(self, cfg: ServiceConfig, groups: int) -> None:
        cfg.check()
        self.cfg = cfg
        self.groups = groups
        self.metrics = ServiceMetrics()
        # with node-local copies the searchers checksum the files (once per node), not this
        self.cache = node_cache(cfg.index, cfg.node_cache)
        self.served: Served = load_served(cfg.index, cfg.version, verify=self.cache is None)
        self.thumbnails = Thumbnails(cfg.dataset) if cfg.dataset else None
        sha = self.served.manifest.get("dataset_sha256")
        if self.thumbnails is not None and sha and self.thumbnails.sha256 != sha:
            raise InputError(
                f"dataset: {cfg.dataset} is not the dataset index version "
                f"{self.served.version} was built from (sha256 differs)"
            )
        self.feedback = FeedbackLog(cfg.feedback or default_path(cfg.index))
        self._swap_lock = asyncio.Lock()

    # --- what differs between Serve and in-process ------------------------------------------

    @abc.abstractmethod
    async def call_group(self, group: int, method: str, *args: Any) -> Any:
        """Call ``ShardGroup.<method>(*args)`` on shard group ``group``."""

    @abc.abstractmethod
    async def embed(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, str]:
        """(N, dim) unit vectors of query images and the URI of the one model that embedded
        them all (a model swap never mixes two models in one answer)."""

    @property
    @abc.abstractmethod
    def model(self) -> str:
        """The query-image model's URI ("" when the service embeds no images)."""

    async def current_model(self) -> str:
        """The model query images are embedded with now (asks the embedder where it runs
        apart, so a model swap shows at once)."""
        return self.model

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int | None:
        """The embedder's dimension (None without one)."""

    @abc.abstractmethod
    async def load_model(self, new: Served, spec: str) -> Callable[[], None]:
        """Ready ``spec``, the model version ``new`` was built by, and return the switch to
        call with the version swap (see :meth:`follow_model`); InputError when it cannot be."""

    # --- shared logic -----------------------------------------------------------------------

    def check_embedder(self) -> None:
        if self.embed_dim is not None and self.embed_dim != self.served.dim:
            raise InputError(
                f"model: {self.model} embeds into {self.embed_dim} dimensions but index "
                f"version {self.served.version} has dim {self.served.dim}"
            )

    async def index_document(self) -> dict[str, Any]:
        return self.served.document(await self.current_model())

    async def search(
        self,
        vectors: np.ndarray,
        k: int,
        nprobe: int | None = None,
        rerank: str | bool | None = None,
        partial: bool = False,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Top-``k`` hits per query vector: ``{"results", "index_version", "model",
        "partial", "missing_shards"}``; ``model`` is the one that embedded query images
        (None: the vectors came from the client or the index, whose model is named). The
        request was checked by :mod:`echoseek.service.validate`."""
        served = self.served
        q = np.asarray(vectors, dtype=np.float32).reshape(-1, served.dim)
        calls = [
            self._ask(g, "search", served.version, q, k, nprobe, rerank) for g in range(self.groups)
        ]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        for a in answers:
            if isinstance(a, EchoseekError):  # the query itself (every group says the same)
                raise QueryError(str(a)) from None
        failed = [g for g, a in enumerate(answers) if isinstance(a, BaseException)]
        for g in failed:
            log.warning("shard group %d failed: %s", g, _first_line(answers[g]))
        if failed and not partial:
            raise QueryError(
                f"shard groups {failed} of index version {served.version} cannot answer; "
                "retry, or allow a partial result with partial=true",
                503,
                "unavailable",
            )
        parts = [a for a in answers if not isinstance(a, BaseException)]
        missing = set(failed)
        return {
            "results": merge_hits(parts, k),
            "index_version": served.version,
            "model": model if model is not None else served.manifest.get("model_uri") or "",
            "partial": bool(failed),
            "missing_shards": [s for s in range(served.shard_count) if s % self.groups in missing],
        }

    def group_of(self, served: Served, internal_id: int) -> int:
        """The shard group holding a live ``internal_id`` (404 when none does)."""
        shard = served.shard_of(internal_id)
        if shard is None or internal_id in served.tombstones:
            raise QueryError(
                f"id {internal_id}: not in index version {served.version}", 404, "not_found"
            )
        return shard % self.groups

    async def item(self, internal_id: int) -> dict[str, Any]:
        """Metadata of one stored item by its internal id (404 when there is none)."""
        served = self.served
        group = self.group_of(served, internal_id)
        found = await self._ask(group, "lookup", served.version, internal_id)
        return {**found, "index_version": served.version}

    async def stored_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of corpus items (queries "more like this item")."""
        served = self.served
        groups = [self.group_of(served, i) for i in ids]
        out = np.zeros((len(ids), served.dim), dtype=np.float32)
        for g in sorted(set(groups)):
            rows = [j for j, h in enumerate(groups) if h == g]
            out[rows] = await self._ask(g, "vectors", served.version, [ids[j] for j in rows])
        return out

    async def thumbnail(self, internal_id: int) -> bytes:
        if self.thumbnails is None:
            raise QueryError("thumbnails: this service has no dataset configured", 404, "not_found")
        item = await self.item(internal_id)
        try:
            return await asyncio.to_thread(self.thumbnails.png, str(item["item"]))
        except InputError as exc:
            raise QueryError(str(exc), 404, "not_found") from None

    async def add_mark(self, internal_id: int, label: int, mark: str, query: str) -> Mark:
        """Append a user's ``mark`` of a live item to the feedback log (404 when the id is
        not in the served version; 503 when the log cannot be written)."""
        served = self.served
        item = await self.item(internal_id)
        record = Mark(
            item=str(item["item"]),
            label=label,
            mark=mark,
            id=internal_id,
            query=query,
            index_version=served.version,
            model=str(served.manifest.get("model_uri") or ""),
            dataset_sha256=str(served.manifest.get("dataset_sha256") or ""),
            time=now(),
        )
        try:
            await asyncio.to_thread(self.feedback.append, record)
        except OSError as exc:
            log.error("feedback log %s: %s", self.feedback.path, exc)
            raise QueryError("feedback: the log cannot be written", 503, "unavailable") from None
        return record

    async def marks(self) -> list[Mark]:
        """Every mark of the feedback log, oldest first."""
        try:
            return await asyncio.to_thread(self.feedback.read)
        except (OSError, InputError) as exc:
            log.error("feedback log %s: %s", self.feedback.path, exc)
            raise QueryError("feedback: the log cannot be read", 503, "unavailable") from None

    async def swap(self, version: str, announce: bool = True) -> dict[str, Any]:
        """Serve ``version`` from now on, once it is verified and every group has opened it;
        a refused version changes nothing (the error says why). ``announce``: tell the other
        ingress replicas to follow (:meth:`announce`)."""
        async with self._swap_lock:
            try:
                new = await asyncio.to_thread(
                    load_served, self.cfg.index, version, self.cache is None
                )
                follow = await self.follow_model(new)
                check_replaceable(self.served, new, self.embed_dim if follow is None else None)
                await asyncio.gather(
                    *(self._ask(g, "load", new.version) for g in range(self.groups))
                )
            except QueryError:
                raise
            except EchoseekError as exc:
                raise QueryError(
                    f"refused, still serving {self.served.version}: {exc}", 409, "refused"
                ) from None
            old, self.served = self.served, new
            if follow is not None:
                follow()
            log.info("index version %s -> %s", old.version, new.version)
            if announce:
                await self.announce(new.version)
        return await self.index_document()

    async def announce(self, version: str) -> None:
        """Make ``version`` the one every replica of the service serves (no other replica in
        this process)."""
        return None

    async def cluster_document(self) -> dict[str, Any]:
        """``GET /v1/cluster``: this process is the whole service."""
        row = {
            "replica": "local", "node_id": "local", "pid": os.getpid(),
            "versions": [self.served.version], "resident_bytes": resident_bytes(),
            "state": "serving",
        }  # fmt: skip
        return {"version": self.served.version, "ingress": [row], "groups": [
            {"group": g, "replicas": [row]} for g in range(self.groups)
        ]}  # fmt: skip

    async def follow_model(self, new: Served) -> Callable[[], None] | None:
        """When query images are embedded with the index's own model (no ``model`` in the
        config) and ``new`` was built by another one: that model, loaded and checked, as a
        switch to call with the version swap (None when the model stays)."""
        spec = model_spec(self.cfg, new)
        if self.cfg.model or not spec or spec == model_spec(self.cfg, self.served):
            return None
        return await self.load_model(new, spec)

    async def unready_groups(self) -> list[int]:
        """The shard groups that cannot answer for the served version right now (one try
        each, within the shard timeout): what ``/readyz`` reports."""
        version, timeout = self.served.version, self.cfg.shard_timeout_s
        calls = (
            asyncio.wait_for(self.call_group(g, "load", version), timeout)
            for g in range(self.groups)
        )
        answers = await asyncio.gather(*calls, return_exceptions=True)
        return [g for g, a in enumerate(answers) if isinstance(a, BaseException)]

    async def _ask(self, group: int, method: str, *args: Any) -> Any:
        """One shard-group call with a timeout, tried up to ATTEMPTS times, timed per group."""
        for attempt in range(ATTEMPTS):
            start = time.perf_counter()
            try:
                result = await asyncio.wait_for(
                    self.call_group(group, method, *args), self.cfg.shard_timeout_s
                )
            except EchoseekError as exc:
                if isinstance(exc, InputError) and method in ("lookup", "vectors"):
                    raise QueryError(str(exc), 404, "not_found") from None
                raise
            except Exception:
                self.metrics.shard_failures.labels(str(group)).inc()
                if attempt + 1 == ATTEMPTS:
                    raise
                await asyncio.sleep(0.05)
                continue
            self.metrics.shard_latency.labels(str(group)).observe(time.perf_counter() - start)
            return result
        raise AssertionError("unreachable")


class LocalBackend(Backend):
    """Every shard group and the embedder in this process (no Ray)."""

    def __init__(self, cfg: ServiceConfig, groups: int = 1) -> None:
        super().__init__(cfg, groups)
        self._groups = [ShardGroup(cfg.index, g, groups, cache=self.cache) for g in range(groups)]
        for g in self._groups:
            g.load(self.served.version)
        self._embedder = make_embedder(cfg, self.served)
        self.check_embedder()

    async def call_group(self, group: int, method: str, *args: Any) -> Any:
        return await asyncio.to_thread(getattr(self._groups[group], method), *args)

    async def load_model(self, new: Served, spec: str) -> Callable[[], None]:
        embedder = await asyncio.to_thread(make_embedder, self.cfg, new)
        if embedder is not None and int(embedder.dim) != new.dim:
            raise InputError(f"model: {spec} embeds into {embedder.dim} dimensions, not {new.dim}")

        def switch() -> None:
            self._embedder = embedder

        return switch

    async def embed(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, str]:
        embedder = self._embedder
        if embedder is None:
            raise no_model_error()
        return await asyncio.to_thread(embedder, list(images)), str(embedder.uri)

    @property
    def model(self) -> str:
        return "" if self._embedder is None else str(self._embedder.uri)

    @property
    def embed_dim(self) -> int | None:
        return None if self._embedder is None else int(self._embedder.dim)


def model_spec(cfg: ServiceConfig, served: Served) -> str:
    """The model query images are embedded with: ``cfg.model``, else the index's own."""
    return cfg.model or str(served.manifest.get("model_uri") or "")


def model_tracking(cfg: ServiceConfig, served: Served) -> str:
    """The MLflow store :func:`model_spec` resolves in: ``cfg.tracking_uri``, else, for the
    index's own model, the store its manifest records (where the index was built)."""
    if cfg.tracking_uri or cfg.model:
        return cfg.tracking_uri
    return str(served.manifest.get("model_tracking_uri") or "")


def make_embedder(cfg: ServiceConfig, served: Served) -> Any:
    """The embedder of :func:`model_spec` (None when neither names one)."""
    spec = model_spec(cfg, served)
    if not spec:
        return None
    return build_embedder(spec, cfg.pixel_size, tracking=model_tracking(cfg, served))


def no_model_error() -> QueryError:
    return QueryError(
        "image: this service has no query-image model (the index records none and no "
        "model is configured); query by vector",
        400,
        "no_model",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
