"""The HTTP API (README.md, "The search service") as a FastAPI app over a :class:`Backend`.

The same app is the Ray Serve ingress (:mod:`echoseek.service.deployments`) and the
in-process server. Client errors are JSON ``{"error": {"code", "message"}}`` with a 4xx
status: a bad field (400/422), a missing or unknown token (401), a token without the scope
(403), an unknown id or version (404), a refused swap (409), a body or image over the limits
(413). Shards that cannot answer are a 503. Requests are counted and timed per route template.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from importlib import resources
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from starlette.exceptions import HTTPException

from echoseek.service.anomaly import NormalScores, anomaly_answer
from echoseek.service.auth import Tokens
from echoseek.service.backend import Backend
from echoseek.service.body_limit import BodyLimit
from echoseek.service.feedback import to_csv
from echoseek.service.images import QueryError, decode_base64, decode_image
from echoseek.service.prometheus import CONTENT_TYPE
from echoseek.service.validate import (
    check_batch,
    check_k,
    check_one_of,
    check_search,
    check_vector,
)

Rerank = str | StrictBool | None
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "refused",
    413: "too_large",
    415: "unsupported",
    422: "invalid",
    503: "unavailable",
}


class OneQuery(BaseModel):
    """One query: a vector, a base64 PNG/JPEG image, or the id of a stored item."""

    model_config = ConfigDict(extra="forbid")
    vector: list[float] | None = None
    image: str | None = None
    id: StrictInt | None = None  # "more like this stored item"


class SearchBody(OneQuery):
    k: StrictInt = 10
    nprobe: StrictInt | None = None
    rerank: Rerank = None
    partial: StrictBool = False  # allow a result without shards that cannot answer


class AnomalyBody(OneQuery):
    k: StrictInt = 5


class FeedbackBody(BaseModel):
    """A user's mark of one hit: stored item ``id`` is ``label`` (``mark`` says which way)."""

    model_config = ConfigDict(extra="forbid")
    id: StrictInt
    label: StrictInt = Field(ge=-(2**63), le=2**63 - 1)
    mark: Literal["positive", "negative"]
    query: str = Field("", max_length=256)  # the query's item id or content hash


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[OneQuery] = Field(min_length=1)
    k: StrictInt = 10
    nprobe: StrictInt | None = None
    rerank: Rerank = None
    partial: StrictBool = False


class SwapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(max_length=64)


def error(status: int, message: str, code: str | None = None) -> JSONResponse:
    body = {"error": {"code": code or CODES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status)


def create_app(backend: Backend, tokens: Tokens) -> FastAPI:
    """The FastAPI app answering every route of the HTTP contract from ``backend``: routers by
    resource (search, items, index, health), auth as a dependency, JSON errors."""
    cfg = backend.cfg
    app = FastAPI(
        title="echoseek search",
        version="1",
        description="Image similarity search over a sharded faiss index.",
    )
    # before the metrics middleware, which then wraps it: refused bodies are counted too
    app.add_middleware(BodyLimit, max_bytes=cfg.limits.max_body_bytes)
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )
    install_errors(app)
    install_metrics(app, backend)
    search_scope = [Depends(require(tokens, "search"))]
    app.include_router(search_router(backend), dependencies=search_scope)
    app.include_router(anomaly_router(backend), dependencies=search_scope)
    app.include_router(items_router(backend), dependencies=search_scope)
    app.include_router(feedback_router(backend), dependencies=search_scope)
    app.include_router(index_router(backend), dependencies=search_scope)
    app.include_router(admin_router(backend), dependencies=[Depends(require(tokens, "admin"))])
    app.include_router(health_router(backend))
    return app


def install_errors(app: FastAPI) -> None:
    """Every client error as JSON ``{"error": {"code", "message"}}``."""

    @app.exception_handler(QueryError)
    async def _query_error(request: Request, exc: QueryError) -> JSONResponse:
        return error(exc.status, str(exc), exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))


def install_metrics(app: FastAPI, backend: Backend) -> None:
    """Count and time every request by its route template (``unmatched`` when none)."""

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        backend.metrics.observe(name, response.status_code, time.perf_counter() - start)
        return response


def require(tokens: Tokens, needed: str) -> Callable[..., None]:
    """A dependency that admits a bearer token with the ``needed`` scope (401 without a valid
    token, 403 with one that lacks the scope)."""

    def check(authorization: Annotated[str | None, Header()] = None) -> None:
        allowed = tokens.allows(authorization, needed)
        if allowed is None:
            raise QueryError(
                "a valid 'Authorization: Bearer <token>' header is required", 401, "unauthorized"
            )
        if not allowed:
            raise QueryError(f"this token lacks the '{needed}' scope", 403, "forbidden")

    return check


async def vectors_of(
    backend: Backend, queries: list[OneQuery], single: bool = False
) -> tuple[np.ndarray, str | None]:
    """The query vectors of ``queries`` (given, of stored items, or embedded images) and the
    model that embedded the images (None when none was); ``single``: the one query of
    ``/v1/search`` (errors name its fields, not ``queries[i]``)."""
    limits = backend.cfg.limits
    check_batch(len(queries), limits.max_batch)
    dim = backend.served.dim
    out = np.zeros((len(queries), dim), dtype=np.float32)
    images: dict[int, np.ndarray] = {}
    items: dict[int, int] = {}
    for i, q in enumerate(queries):
        field = "body" if single else f"queries[{i}]"
        check_one_of(field, q.vector, q.image, q.id)
        if q.image is not None:
            data = decode_base64(q.image, limits.max_body_bytes)
            images[i] = decode_image(data, limits.max_image_pixels)
        elif q.id is not None:
            items[i] = q.id
        else:
            out[i] = check_vector(q.vector, dim, "vector" if single else f"{field}.vector")
    if items:
        out[list(items)] = await backend.stored_vectors(list(items.values()))
    model = None
    if images:
        out[list(images)], model = await backend.embed(list(images.values()))
    return out, model


async def answer(
    backend: Backend,
    vectors: np.ndarray,
    model: str | None,
    k: int,
    nprobe: int | None,
    rerank: Any,
    partial: bool,
    single: bool,
) -> dict[str, Any]:
    """The search answer document for ``vectors`` (one result list when ``single``)."""
    start = time.perf_counter()
    found = await backend.search(vectors, k, nprobe, rerank, partial, model)
    if single:
        found["results"] = found["results"][0]
    found["took_ms"] = round((time.perf_counter() - start) * 1000, 3)
    if not found["partial"]:
        del found["missing_shards"]
    return found


def search_router(backend: Backend) -> APIRouter:
    """``/v1/search``, ``/v1/search/image`` and ``/v1/search/batch``."""
    router = APIRouter()
    max_k = backend.cfg.limits.max_k

    @router.post("/v1/search")
    async def search(body: SearchBody) -> dict[str, Any]:
        """Top-k of one query (a vector, or a base64 PNG/JPEG image)."""
        check_search(body.k, body.nprobe, body.rerank, max_k)
        one = OneQuery(vector=body.vector, image=body.image, id=body.id)
        vectors, model = await vectors_of(backend, [one], single=True)
        return await answer(
            backend, vectors, model, body.k, body.nprobe, body.rerank, body.partial, single=True
        )

    @router.post("/v1/search/image")
    async def search_image(
        file: Annotated[UploadFile, File(description="a PNG or JPEG query image")],
        k: Annotated[int, Query()] = 10,
        nprobe: Annotated[int | None, Query()] = None,
        rerank: Annotated[str | None, Query()] = None,
        partial: Annotated[bool, Query()] = False,
    ) -> dict[str, Any]:
        """Top-k of an uploaded image (multipart field ``file``)."""
        rerank_value = _rerank_param(rerank)
        check_search(k, nprobe, rerank_value, max_k)
        image = decode_image(await file.read(), backend.cfg.limits.max_image_pixels)
        vectors, model = await backend.embed([image])
        return await answer(backend, vectors, model, k, nprobe, rerank_value, partial, single=True)

    @router.post("/v1/search/batch")
    async def search_batch(body: BatchBody) -> dict[str, Any]:
        """Top-k of each query of a batch, in order."""
        check_search(body.k, body.nprobe, body.rerank, max_k)
        vectors, model = await vectors_of(backend, body.queries)
        return await answer(
            backend, vectors, model, body.k, body.nprobe, body.rerank, body.partial, single=False
        )

    return router


def anomaly_router(backend: Backend) -> APIRouter:
    """``/v1/anomaly``: the kNN anomaly score of one query against the served items."""
    router = APIRouter()
    normals = NormalScores()

    @router.post("/v1/anomaly")
    async def anomaly(body: AnomalyBody) -> dict[str, Any]:
        """Mean cosine distance of a vector, a base64 image or a stored item to its ``k``
        nearest stored items, and its percentile among the stored items' own scores."""
        start = time.perf_counter()
        check_k(body.k, backend.cfg.limits.max_k)
        one = OneQuery(vector=body.vector, image=body.image, id=body.id)
        vectors, model = await vectors_of(backend, [one], single=True)
        found = await anomaly_answer(backend, normals, vectors[0], body.k, body.id, model)
        return {**found, "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    return router


def feedback_router(backend: Backend) -> APIRouter:
    """``/v1/feedback``: marks of hits, kept in the index root's feedback log."""
    router = APIRouter()
    max_items = backend.cfg.limits.max_k

    @router.post("/v1/feedback")
    async def add(body: FeedbackBody) -> dict[str, Any]:
        """Append a mark of a stored item; the answer is the stored record and the count."""
        record = await backend.add_mark(body.id, body.label, body.mark, body.query)
        return {"mark": asdict(record), "count": len(await backend.marks())}

    @router.get("/v1/feedback/marks")
    async def marks(
        item: Annotated[list[Annotated[str, Field(max_length=256)]], Query()] = [],  # noqa: B006
    ) -> dict[str, Any]:
        """The last mark of each given item (dataset id: internal ids change between
        versions) that has one, and the log's count."""
        if len(item) > max_items:
            raise QueryError(f"item: at most {max_items} items per request, got {len(item)}", 400)
        every = await backend.marks()
        wanted = set(item)
        return {
            "marks": {m.item: asdict(m) for m in every if m.item in wanted},
            "count": len(every),
        }

    return router


def items_router(backend: Backend) -> APIRouter:
    """``/v1/items/{id}`` and its thumbnail."""
    router = APIRouter()

    @router.get("/v1/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        """Metadata of one stored item by its (internal, integer) id."""
        return await backend.item(item_id)

    @router.get(
        "/v1/items/{item_id}/thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def thumbnail(item_id: int) -> Response:
        """A PNG thumbnail of one stored item, read from the dataset."""
        return Response(await backend.thumbnail(item_id), media_type="image/png")

    return router


def index_router(backend: Backend) -> APIRouter:
    """``GET /v1/index``: the version being served."""
    router = APIRouter()

    @router.get("/v1/index")
    async def index() -> dict[str, Any]:
        """The index version being served."""
        return await backend.index_document()

    return router


def admin_router(backend: Backend) -> APIRouter:
    """``POST /v1/admin/index``: the version switch, ``GET /v1/cluster``: who serves what
    where, and ``GET /v1/feedback``: the feedback log as a labels CSV (admin scope)."""
    router = APIRouter()

    @router.get(
        "/v1/feedback",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def export() -> Response:
        """Every mark, oldest first, as the labels CSV ``echoseek relabel`` applies."""
        disposition = 'attachment; filename="feedback.csv"'
        return Response(
            to_csv(await backend.marks()),
            media_type="text/csv",
            headers={"Content-Disposition": disposition},
        )

    @router.post("/v1/admin/index")
    async def swap(body: SwapBody) -> dict[str, Any]:
        """Switch to another published version under the configured root (or ``latest``)."""
        return await backend.swap(body.version)

    @router.get("/v1/cluster")
    async def cluster() -> dict[str, Any]:
        """The version every replica should serve, the ingress replicas and each shard
        group's replicas: node, state (serving or loading it), versions open, resident
        bytes."""
        return await backend.cluster_document()

    return router


def health_router(backend: Backend) -> APIRouter:
    """Liveness, readiness, Prometheus metrics and the web page: no token needed."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        down = await backend.unready_groups()
        if down:
            return error(503, f"not ready: shard groups {down} cannot answer")
        ready = {"ready": True, "index_version": backend.served.version}
        return JSONResponse({**ready, "model": await backend.current_model()})

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(backend.metrics.text(), media_type=CONTENT_TYPE)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    return router


def _rerank_param(value: str | None) -> str | bool | None:
    """A query-string ``rerank``: a distance name, ``true``/``false``, or absent."""
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return value


def page_html() -> str:
    """The web page (``echoseek/service/static/index.html``)."""
    return resources.files("echoseek.service").joinpath("static/index.html").read_text()
