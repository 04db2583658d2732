"""The HTTP API (shared/DESIGN.md, "HTTP") as a FastAPI app over a :class:`Backend`.

The same app is the Ray Serve ingress (:mod:`echoseek.service.deployments`) and the
in-process server. Client errors are JSON ``{"error": {"code", "message"}}`` with a 4xx
status: a bad field (400/422), a missing or unknown token (401), a token without the scope
(403), an unknown id or version (404), a refused swap (409), a body or image over the limits
(413). Shards that cannot answer are a 503. Requests are counted and timed per route template.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from starlette.exceptions import HTTPException

from echoseek.service.auth import Tokens
from echoseek.service.backend import Backend
from echoseek.service.body_limit import BodyLimit
from echoseek.service.images import QueryError, decode_base64, decode_image
from echoseek.service.metrics import CONTENT_TYPE

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
    """The FastAPI app answering every route of the HTTP contract from ``backend``."""
    cfg = backend.cfg
    limits = cfg.limits
    app = FastAPI(
        title="echoseek search",
        version="1",
        description="Image similarity search over a sharded faiss index.",
    )
    # before the metrics middleware below, which then wraps it: refused bodies are counted too
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )

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

    def scope(needed: str) -> Callable[..., None]:
        def check(authorization: Annotated[str | None, Header()] = None) -> None:
            allowed = tokens.allows(authorization, needed)
            if allowed is None:
                raise QueryError(
                    "a valid 'Authorization: Bearer <token>' header is required",
                    401,
                    "unauthorized",
                )
            if not allowed:
                raise QueryError(f"this token lacks the '{needed}' scope", 403, "forbidden")

        return check

    search_scope = [Depends(scope("search"))]

    async def vectors_of(queries: list[OneQuery]) -> tuple[np.ndarray, str | None]:
        if len(queries) > limits.max_batch:
            raise QueryError(f"queries: at most {limits.max_batch} per batch, got {len(queries)}")
        images: dict[int, np.ndarray] = {}
        vectors: dict[int, list[float]] = {}
        items: dict[int, int] = {}
        for i, q in enumerate(queries):
            if sum(x is not None for x in (q.vector, q.image, q.id)) != 1:
                raise QueryError(f"queries[{i}]: give exactly one of 'vector', 'image' or 'id'")
            if q.image is not None:
                data = decode_base64(q.image, limits.max_body_bytes)
                images[i] = decode_image(data, limits.max_image_pixels)
            elif q.id is not None:
                items[i] = q.id
            else:
                vectors[i] = q.vector or []
        dim = backend.served.dim
        out = np.zeros((len(queries), dim), dtype=np.float32)
        for i, v in vectors.items():
            if len(v) != dim:
                raise QueryError(f"queries[{i}].vector: expected {dim} numbers, got {len(v)}")
            with np.errstate(over="ignore"):  # too large for float32: inf, refused below
                out[i] = np.asarray(v, dtype=np.float32)
        if items:
            out[list(items)] = await backend.stored_vectors(list(items.values()))
        model = None
        if images:
            out[list(images)], model = await backend.embed(list(images.values()))
        return out, model

    async def answer(
        vectors: np.ndarray,
        model: str | None,
        k: int,
        nprobe: int | None,
        rerank: Any,
        partial: bool,
        single: bool,
    ) -> dict[str, Any]:
        start = time.perf_counter()
        found = await backend.search(vectors, k, nprobe, rerank, partial, model)
        if single:
            found["results"] = found["results"][0]
        found["took_ms"] = round((time.perf_counter() - start) * 1000, 3)
        if not found["partial"]:
            del found["missing_shards"]
        return found

    @app.post("/v1/search", dependencies=search_scope)
    async def search(body: SearchBody) -> dict[str, Any]:
        """Top-k of one query (a vector, or a base64 PNG/JPEG image)."""
        one = OneQuery(vector=body.vector, image=body.image, id=body.id)
        vectors, model = await vectors_of([one])
        return await answer(
            vectors, model, body.k, body.nprobe, body.rerank, body.partial, single=True
        )

    @app.post("/v1/search/image", dependencies=search_scope)
    async def search_image(
        file: Annotated[UploadFile, File(description="a PNG or JPEG query image")],
        k: Annotated[int, Query()] = 10,
        nprobe: Annotated[int | None, Query()] = None,
        rerank: Annotated[str | None, Query()] = None,
        partial: Annotated[bool, Query()] = False,
    ) -> dict[str, Any]:
        """Top-k of an uploaded image (multipart field ``file``)."""
        image = decode_image(await file.read(), limits.max_image_pixels)
        vectors, model = await backend.embed([image])
        return await answer(vectors, model, k, nprobe, _rerank_param(rerank), partial, single=True)

    @app.post("/v1/search/batch", dependencies=search_scope)
    async def search_batch(body: BatchBody) -> dict[str, Any]:
        """Top-k of each query of a batch, in order."""
        vectors, model = await vectors_of(body.queries)
        return await answer(
            vectors, model, body.k, body.nprobe, body.rerank, body.partial, single=False
        )

    @app.get("/v1/items/{item_id}", dependencies=search_scope)
    async def item(item_id: int) -> dict[str, Any]:
        """Metadata of one stored item by its (internal, integer) id."""
        return await backend.item(item_id)

    @app.get(
        "/v1/items/{item_id}/thumbnail",
        dependencies=search_scope,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def thumbnail(item_id: int) -> Response:
        """A PNG thumbnail of one stored item, read from the dataset."""
        return Response(await backend.thumbnail(item_id), media_type="image/png")

    @app.get("/v1/index", dependencies=search_scope)
    async def index() -> dict[str, Any]:
        """The index version being served."""
        return await backend.index_document()

    @app.post("/v1/admin/index", dependencies=[Depends(scope("admin"))])
    async def swap(body: SwapBody) -> dict[str, Any]:
        """Switch to another published version under the configured root (or ``latest``)."""
        return await backend.swap(body.version)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        down = await backend.unready_groups()
        if down:
            return error(503, f"not ready: shard groups {down} cannot answer")
        return JSONResponse(
            {
                "ready": True,
                "index_version": backend.served.version,
                "model": await backend.current_model(),
            }
        )

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(backend.metrics.text(), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    return app


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
