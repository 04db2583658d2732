"""The Ray Serve deployments: query-image embedder, shard searchers, and the HTTP ingress.

``Embedder`` batches concurrent query images (``@serve.batch``) through the model's own eval
transform (GPU and AMP when the replica has a GPU). ``ShardSearcher`` holds one
:class:`~echoseek.service.searcher.ShardGroup` (memory-mapped shards of the versions it is
asked for); each group is its own deployment, so replicas and autoscaling are set per group.
``SearchIngress`` is the FastAPI app of :mod:`echoseek.service.http` over a
:class:`~echoseek.service.backend.Backend` whose calls go through deployment handles, or,
with ``colocate``, to one ``ShardGroup`` of every shard in its own process.

Swaps: ``reconfigure`` of the ingress (a ``serve deploy`` with a changed ``user_config:
{version: ...}``) and ``POST /v1/admin/index`` both verify the new version, warm every group,
then switch, and post it on the service's board (:mod:`echoseek.service.board`), which every
other ingress replica follows within a second; the embedder's ``reconfigure({model: ...})``
loads a new model before switching. Every replica reports itself to the board, which
``GET /v1/cluster`` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from echoseek.config import from_dict
from echoseek.embedding import build_embedder
from echoseek.errors import InputError
from echoseek.ray_session import quiet_worker
from echoseek.service.auth import load_tokens
from echoseek.service.backend import Backend, no_model_error
from echoseek.service.board import POLL_S, board, cluster_document, first_version, replica_info
from echoseek.service.config import ServiceConfig
from echoseek.service.http import create_app
from echoseek.service.images import QueryError
from echoseek.service.node_copy import node_cache
from echoseek.service.searcher import ShardGroup
from echoseek.service.versions import Served

log = logging.getLogger("echoseek.service")
LIGHT = {"num_cpus": 0.1}  # a replica's reservation on CPU machines (serve/*.yaml override it)


def quiet_replica() -> None:
    quiet_worker()


def replica_name() -> str:
    """``<deployment>#<id>`` of the replica this runs in."""
    return str(serve.get_replica_context().replica_id.to_full_id_str())


@serve.deployment(ray_actor_options=LIGHT, max_ongoing_requests=64)
class ShardSearcher:
    """Shards ``i % groups == group`` of the versions under ``root``."""

    def __init__(self, root: str, group: int, groups: int, version: str, cache: str = "") -> None:
        quiet_replica()
        self.group = ShardGroup(root, group, groups, cache=node_cache(root, cache))
        self.group.load(first_version(root, version))
        self._report = asyncio.get_running_loop().create_task(self._report_loop(root, group))

    async def _report_loop(self, root: str, group: int) -> None:
        """Tell the board what this replica holds, every ``POLL_S``."""
        name, notice = replica_name(), board(root)
        while True:
            info = replica_info("searcher", group, self.group.open_versions())
            with contextlib.suppress(Exception):  # a board restarting: report next time
                await notice.report.remote(name, info)
            await asyncio.sleep(POLL_S)

    def search(
        self,
        version: str,
        queries: np.ndarray,
        k: int,
        nprobe: int | None,
        rerank: str | bool | None,
    ) -> Any:
        return self.group.search(version, queries, k, nprobe, rerank)

    def lookup(self, version: str, internal_id: int) -> dict[str, Any]:
        return self.group.lookup(version, internal_id)

    def vectors(self, version: str, ids: list[int]) -> np.ndarray:
        return self.group.vectors(version, ids)

    def load(self, version: str) -> list[int]:
        return self.group.load(version)


@serve.deployment(ray_actor_options=LIGHT, max_ongoing_requests=64)
class Embedder:
    """Query images -> unit vectors with one model, ``batch_size`` images per model call."""

    def __init__(
        self,
        spec: str,
        pixel_size: int,
        tracking: str,
        dim: int,
        batch_size: int,
        batch_wait_ms: float,
    ) -> None:
        quiet_replica()
        self.pixel_size, self.tracking, self.dim = pixel_size, tracking, dim
        self.embedder = self._load(spec)
        self.embed.set_max_batch_size(batch_size)  # type: ignore[attr-defined]
        self.embed.set_batch_wait_timeout_s(batch_wait_ms / 1000)  # type: ignore[attr-defined]

    def _load(self, spec: str) -> Any:
        embedder = build_embedder(spec, self.pixel_size, tracking=self.tracking)
        if embedder.dim != self.dim:
            raise InputError(
                f"model: {spec} embeds into {embedder.dim} dimensions, the index has {self.dim}"
            )
        return embedder

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def embed(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
        """Each image's unit vector and the URI of the model that embedded it."""
        embedder = self.embedder  # one model for the whole batch, even across a swap
        vectors = await asyncio.to_thread(embedder, images)
        return [(v, str(embedder.uri)) for v in vectors]

    def uri(self) -> str:
        return str(self.embedder.uri)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``{model: URI}``: load and check the new model, then switch to it."""
        spec = (user_config or {}).get("model")
        if spec and spec != self.embedder.uri:
            self.embedder = await asyncio.to_thread(self._load, str(spec))


@serve.deployment(ray_actor_options=LIGHT, max_ongoing_requests=256)
@serve.ingress()
class SearchIngress(Backend):
    """The HTTP API over shard-group and embedder handles."""

    def __init__(
        self,
        cfg: dict[str, Any],
        embedder: DeploymentHandle | None,
        groups: list[DeploymentHandle],
        model: str,
    ) -> None:
        quiet_replica()
        config = from_dict(ServiceConfig, cfg)
        config.version = first_version(config.index, config.version)
        super().__init__(config, len(groups) or 1)
        self._handles, self._embedder, self._model = groups, embedder, model
        cache = node_cache(config.index, config.node_cache)
        self._local = [] if groups else [ShardGroup(config.index, 0, 1, cache=cache)]  # colocate
        for group in self._local:
            group.load(self.served.version)
        self.tokens = load_tokens(config.tokens_file)
        self._board, self._seen = board(config.index), 0
        self._follower = asyncio.get_running_loop().create_task(self._follow_board())

    async def _follow_board(self) -> None:
        """Every ``POLL_S``: swap to the board's target when it moved since this replica last
        saw or posted it (a refused version is not tried again), and report."""
        name = replica_name()
        while True:
            try:
                seq, target = await self._board.target.remote()
                if seq > self._seen:
                    self._seen = seq
                    if target and target != self.served.version:
                        await self._follow(target)
                info = replica_info("ingress", None, [self.served.version])
                await self._board.report.remote(name, info)
            except Exception as exc:  # the board restarting: try again next time
                log.warning("board unreachable: %s", exc)
            await asyncio.sleep(POLL_S)

    async def _follow(self, target: str) -> None:
        try:
            await self.swap(target, announce=False)
        except QueryError as exc:
            log.warning("not following the board to %s: %s", target, exc)

    async def announce(self, version: str) -> None:
        """Post ``version`` on the board; this replica has switched either way (a board that
        cannot be reached is logged; the others follow the next post)."""
        try:
            self._seen = max(self._seen, await self._board.post.remote(version))
        except Exception as exc:
            log.warning("board unreachable, %s not announced: %s", version, exc)

    async def cluster_document(self) -> dict[str, Any]:
        try:
            snapshot = await self._board.snapshot.remote()
        except Exception:
            msg = "the service's board is unreachable; retry"
            raise QueryError(msg, 503, "unavailable") from None
        return cluster_document(snapshot, len(self._handles) or len(self._local))

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self, self.tokens)

    async def call_group(self, group: int, method: str, *args: Any) -> Any:
        if self._local:  # colocated: every shard in this replica, no hop
            return await asyncio.to_thread(getattr(self._local[group], method), *args)
        return await getattr(self._handles[group], method).remote(*args)

    async def embed(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, str]:
        """The images embedded by one model: when a model swap lands between the images of
        one request (they may be batched apart), the request is embedded again, once."""
        if self._embedder is None:
            raise no_model_error()
        for _ in range(2):
            answers = await asyncio.gather(*(self._embedder.embed.remote(i) for i in images))
            models = {uri for _, uri in answers}
            if len(models) == 1:
                self._model = models.pop()
                return np.stack([v for v, _ in answers]), self._model
        raise QueryError("model: the query-image model changed during the request; retry", 503,
                         "unavailable")  # fmt: skip

    @property
    def model(self) -> str:
        return self._model

    async def current_model(self) -> str:
        if self._embedder is not None:
            self._model = str(await self._embedder.uri.remote())
        return self._model

    @property
    def embed_dim(self) -> int | None:
        return None  # the Embedder checks its dim against the index when it starts

    async def load_model(self, new: Served, spec: str) -> Callable[[], None]:
        """The Embedder is a deployment of its own, reached on every replica only by a
        ``serve deploy``: the swap goes ahead once it embeds with ``spec``."""
        if self._embedder is None or await self.current_model() == spec:
            return lambda: None
        raise InputError(
            f"version {new.version} was built by model {spec} but query images are embedded "
            f"by {self._model}: deploy that model first (serve deploy with the Embedder's "
            f"user_config: {{model: {spec}}}), then swap"
        )

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``{version: ID | latest}`` from a ``serve deploy``: swap to it (a refused
        version leaves the served one and fails the deploy with the reason)."""
        version = (user_config or {}).get("version")
        if version and version != self.served.version:
            await self.swap(str(version))
