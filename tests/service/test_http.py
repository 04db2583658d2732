"""The HTTP API over the in-process backend: a real uvicorn server on 127.0.0.1 and a real
HTTP client. Every route, its 4xx answers, auth scopes, swaps and metrics."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from echoseek.baseline import pixel_embed
from echoseek.index import open_index
from echoseek.index.publish import read_latest
from echoseek.index.update import add_vectors
from echoseek.service.auth import load_tokens
from echoseek.service.backend import LocalBackend
from echoseek.service.config import Limits, ServiceConfig
from echoseek.service.http import create_app
from tests.service.conftest import PIXELS, frame, free_port

SEARCH, ADMIN = "s" * 20, "a" * 20
TOKENS = {"ECHOSEEK_TOKENS": f"{SEARCH}:search,{ADMIN}:admin"}


class Running:
    """A uvicorn server in a thread; ``client`` talks to it over HTTP."""

    def __init__(self, app: Any) -> None:
        port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve_local(cfg: ServiceConfig, env: dict[str, str] | None = None, groups: int = 2) -> Running:
    backend = LocalBackend(cfg, groups=groups)
    return Running(create_app(backend, load_tokens(cfg.tokens_file, env or {})))


@pytest.fixture(scope="module")
def open_server(service_index: Path, service_dataset: Path) -> Iterator[Running]:
    cfg = ServiceConfig(
        index=str(service_index),
        dataset=str(service_dataset),
        pixel_size=PIXELS,
        limits=Limits(max_k=50, max_batch=4, max_body_bytes=200_000, max_image_pixels=1_000_000),
    )
    running = serve_local(cfg)
    yield running
    running.stop()


@pytest.fixture
def client(open_server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open_server.url, timeout=30) as c:
        yield c


def png_b64(image: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def assert_error(r: httpx.Response, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"code", "message"} and needle in body["message"], body


def test_image_query_finds_its_own_frame_with_metadata(
    client, service_dataset, service_index
) -> None:  # type: ignore[no-untyped-def]
    query = frame(service_dataset, 7)
    r = client.post("/v1/search", json={"image": png_b64(query), "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    top = body["results"][0]
    assert top["frame_index"] == 7 and top["label"] == 7 % 2 and top["item"] == "d:000007"
    assert top["score"] == pytest.approx(1.0, abs=1e-5)  # cosine of a frame with itself
    assert [h["score"] for h in body["results"]] == sorted(
        (h["score"] for h in body["results"]), reverse=True
    )
    assert body["index_version"] == read_latest(service_index) and body["model"] == "pixels"
    assert len(body["results"]) == 5 and body["took_ms"] > 0 and body["partial"] is False
    # the same image as a multipart upload, and its vector, give the same hits
    png = base64.b64decode(png_b64(query))
    up = client.post(
        "/v1/search/image", files={"file": ("q.png", png, "image/png")}, params={"k": 5}
    )
    assert [h["id"] for h in up.json()["results"]] == [h["id"] for h in body["results"]]
    vector = pixel_embed([query], PIXELS)[0].tolist()
    by_vec = client.post("/v1/search", json={"vector": vector, "k": 5}).json()
    assert [h["id"] for h in by_vec["results"]] == [h["id"] for h in body["results"]]


def test_score_means_the_same_with_and_without_a_re_rank(client, service_dataset) -> None:  # type: ignore[no-untyped-def]
    """Higher is better, and for cosine it is the similarity whether or not an exact re-rank
    scored the hit; a re-rank adds the distance as its own field."""
    vector = pixel_embed([frame(service_dataset, 3)], PIXELS)[0].tolist()
    ask = {"vector": vector, "k": 5, "nprobe": 4}
    plain = client.post("/v1/search", json={**ask, "rerank": False}).json()["results"]
    exact = client.post("/v1/search", json={**ask, "rerank": True}).json()["results"]
    assert [h["id"] for h in exact] == [h["id"] for h in plain]
    assert [h["score"] for h in exact] == pytest.approx([h["score"] for h in plain], abs=1e-4)
    assert all("distance" not in h for h in plain)
    for h in exact:
        assert h["distance_name"] == "cosine" and h["distance"] == pytest.approx(1 - h["score"])
    l2 = client.post("/v1/search", json={**ask, "rerank": "sqeuclidean"}).json()["results"]
    assert all(h["score"] == -h["distance"] and h["distance"] >= 0 for h in l2)
    assert [h["score"] for h in l2] == sorted((h["score"] for h in l2), reverse=True)


def test_query_by_a_stored_item(client) -> None:  # type: ignore[no-untyped-def]
    found = client.post("/v1/search", json={"id": 33, "k": 3}).json()
    assert found["results"][0]["id"] == 33
    assert found["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)  # float16 stored
    batch = client.post("/v1/search/batch", json={"queries": [{"id": 40}, {"id": 2}], "k": 1})
    assert [row[0]["id"] for row in batch.json()["results"]] == [40, 2]
    assert_error(client.post("/v1/search", json={"id": 60}), 404, "not in index version")


def test_results_equal_the_library_reader(client, service_index) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, PIXELS * PIXELS)).astype(np.float32)
    r = client.post(
        "/v1/search/batch", json={"queries": [{"vector": v.tolist()} for v in q], "k": 7}
    )
    assert r.status_code == 200, r.text
    with open_index(service_index) as reader:
        scores, ids = reader.search(q, 7)
    got = r.json()["results"]
    assert [[h["id"] for h in row] for row in got] == ids.tolist()
    np.testing.assert_allclose([[h["score"] for h in row] for row in got], scores, rtol=1e-5)


def test_items_thumbnail_index_health_and_metrics(client, service_index) -> None:  # type: ignore[no-untyped-def]
    item = client.get("/v1/items/12").json()
    assert item["id"] == 12 and item["item"] == "d:000012" and item["frame_index"] == 12
    thumb = client.get("/v1/items/12/thumbnail")
    assert thumb.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumb.content)).size == (20, 24)  # small frames stay whole
    doc = client.get("/v1/index").json()
    assert doc["version"] == read_latest(service_index) and doc["ntotal"] == 60
    assert doc["dim"] == 64 and doc["shards"] == 2 and doc["model"] == "pixels"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    client.post("/v1/search", json={"vector": [0.0] * 3})
    text = client.get("/metrics").text
    assert 'echoseek_requests_total{route="/v1/items/{item_id}",status="200"}' in text
    assert 'echoseek_requests_total{route="/v1/search",status="400"}' in text
    assert 'echoseek_shard_seconds_bucket{group="1"' in text
    assert "/v1/search" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def bomb_png() -> str:
    """A 1-bit 2000×2000 PNG: a few kB that decodes to 4 M pixels (the limit here is 1 M)."""
    out = io.BytesIO()
    Image.new("1", (2000, 2000)).save(out, format="PNG")
    assert len(out.getvalue()) < 10_000
    return base64.b64encode(out.getvalue()).decode()


BAD_BODIES = [
    ({"vector": [1.0] * 3}, 400, "expected 64 numbers"),
    ('{"vector": [' + ", ".join(["NaN"] * 64) + "]}", 400, "NaN"),
    ({"vector": [0.0] * 64}, 400, "all zeros"),
    ({"vector": [1e39] * 64}, 400, "NaN or infinite"),
    ({"vector": [1.0] * 64, "k": 0}, 400, "k: must be an integer in 1..50"),
    ({"vector": [1.0] * 64, "k": 10**9}, 400, "k: must be an integer in 1..50"),
    ({"vector": [1.0] * 64, "k": True}, 422, "k"),
    ({"vector": [1.0] * 64, "nprobe": 0}, 400, "nprobe"),
    ({"vector": [1.0] * 64, "rerank": "chebyshev"}, 400, "unknown name 'chebyshev'"),
    ({"vector": [1.0] * 64, "image": "aGk="}, 400, "exactly one of"),
    ({}, 400, "exactly one of"),
    ({"vector": [1.0] * 64, "color": "red"}, 422, "color"),
    ({"image": "not base64!"}, 400, "not valid base64"),
    ({"image": base64.b64encode(b"GIF89a" + b"\0" * 30).decode()}, 400, "not a PNG or JPEG"),
    ({"image": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 30).decode()}, 400, "PNG or JPEG"),
]


@pytest.mark.parametrize(("body", "status", "needle"), BAD_BODIES)
def test_bad_bodies_get_4xx_naming_the_problem(client, body, status, needle) -> None:  # type: ignore[no-untyped-def]
    if isinstance(body, str):  # not JSON any encoder writes (NaN), as a client may send
        r = client.post("/v1/search", content=body, headers={"content-type": "application/json"})
    else:
        r = client.post("/v1/search", json=body)
    assert_error(r, status, needle)


def test_limits_and_malformed_requests(client) -> None:  # type: ignore[no-untyped-def]
    assert_error(client.post("/v1/search", json={"image": bomb_png()}), 413, "more than the limit")
    big = {"vector": [1.0] * 64, "pad": "x" * 300_000}
    assert_error(client.post("/v1/search", json=big), 413, "body: larger than")
    chunks = (b'{"pad": "' + b"x" * 65_536 for _ in range(8))  # no Content-Length: chunked
    r = client.post("/v1/search", content=chunks, headers={"content-type": "application/json"})
    assert_error(r, 413, "body: larger than")
    five = {"queries": [{"vector": [1.0] * 64}] * 5}
    assert_error(client.post("/v1/search/batch", json=five), 400, "at most 4 per batch")
    assert_error(client.post("/v1/search/batch", json={"queries": []}), 422, "queries")
    deep = "[" * 5000 + "]" * 5000
    r = client.post("/v1/search", content=deep, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    r = client.post(
        "/v1/search", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(r, 422, "JSON")
    assert_error(client.get("/v1/items/99999"), 404, "not in index version")
    assert_error(client.get("/v1/items/-3"), 404, "not in index version")
    assert client.get("/v1/items/abc").status_code == 422
    assert client.get("/v1/items/../../etc/passwd").status_code == 404
    assert_error(
        client.post("/v1/search/image", files={"file": ("q", b"junk", "image/png")}), 400, "PNG"
    )
    assert client.get("/v1/nothing").status_code == 404
    assert client.put("/v1/search").status_code == 405


def test_every_search_route_checks_its_options_the_same_way(client) -> None:  # type: ignore[no-untyped-def]
    """One validator: the same field, the same words, whichever route; options are refused
    before any image is decoded or embedded."""
    png = ("q.png", base64.b64decode(png_b64(np.zeros((8, 8), np.uint8))), "image/png")
    vector = [1.0] * 64
    for field, value, needle in [
        ("k", 0, "k: must be an integer in 1..50, got 0"),
        ("nprobe", 0, "nprobe: must be a positive integer or null, got 0"),
        ("rerank", "chebyshev", "rerank: unknown name 'chebyshev'"),
    ]:
        one = client.post("/v1/search", json={"vector": vector, field: value})
        batch = client.post(
            "/v1/search/batch", json={"queries": [{"vector": vector}], field: value}
        )
        up = client.post("/v1/search/image", files={"file": png}, params={field: value})
        for r in (one, batch, up):
            assert_error(r, 400, needle)
    short = {"queries": [{"vector": vector}, {"vector": [1.0] * 3}]}
    assert_error(client.post("/v1/search/batch", json=short), 400, "queries[1].vector: expected 64")
    both = {"queries": [{"vector": vector, "id": 3}]}
    assert_error(client.post("/v1/search/batch", json=both), 400, "queries[0]: give exactly one")


def test_auth_scopes(service_index, service_dataset) -> None:  # type: ignore[no-untyped-def]
    cfg = ServiceConfig(index=str(service_index), pixel_size=PIXELS)
    running = serve_local(cfg, env=TOKENS)
    try:
        with httpx.Client(base_url=running.url) as c:
            body = {"vector": [1.0] * 64}
            assert_error(c.post("/v1/search", json=body), 401, "Bearer")
            wrong = {"Authorization": "Bearer " + "x" * 20}
            assert_error(c.post("/v1/search", json=body, headers=wrong), 401, "Bearer")
            search = {"Authorization": f"Bearer {SEARCH}"}
            assert c.post("/v1/search", json=body, headers=search).status_code == 200
            swap = {"version": "latest"}
            assert_error(c.post("/v1/admin/index", json=swap, headers=search), 403, "admin")
            admin = {"Authorization": f"Bearer {ADMIN}"}
            assert c.post("/v1/admin/index", json=swap, headers=admin).status_code == 200
            assert c.post("/v1/search", json=body, headers=admin).status_code == 200
            assert c.get("/healthz").status_code == 200  # probes stay open
    finally:
        running.stop()


def test_swap_to_a_new_version_and_refusals(index_root_copy, service_dataset, tmp_path) -> None:  # type: ignore[no-untyped-def]
    old = read_latest(index_root_copy)
    cfg = ServiceConfig(index=str(index_root_copy), pixel_size=PIXELS)
    running = serve_local(cfg)
    try:
        with httpx.Client(base_url=running.url) as c:
            more = np.random.default_rng(1).normal(size=(10, 64)).astype(np.float32)
            add_vectors(index_root_copy, more, ids=[f"b:{i}" for i in range(10)])
            new = read_latest(index_root_copy)
            assert c.get("/v1/index").json()["version"] == old  # published is not served
            doc = c.post("/v1/admin/index", json={"version": "latest"}).json()
            assert doc["version"] == new and doc["ntotal"] == 70 and doc["shards"] == 3
            hit = c.post("/v1/search", json={"vector": [1.0] * 64, "k": 2}).json()
            assert hit["index_version"] == new
            assert_error(
                c.post("/v1/admin/index", json={"version": "../../etc"}), 400, "version id"
            )
            assert_error(
                c.post("/v1/admin/index", json={"version": "v20990101T000000000000-abcdef"}),
                404,
                "not published",
            )
            # a corrupt version is refused and the served one keeps answering
            shard = index_root_copy / old / "shard-00000.faiss"
            shard.write_bytes(shard.read_bytes()[:-8] + b"\0" * 8)
            assert_error(c.post("/v1/admin/index", json={"version": old}), 409, "checksum mismatch")
            assert c.get("/v1/index").json()["version"] == new
            assert c.post("/v1/search", json={"vector": [1.0] * 64}).status_code == 200
    finally:
        running.stop()


def test_a_group_that_cannot_answer_is_503_or_marked_partial(service_index) -> None:  # type: ignore[no-untyped-def]
    class OneGroupDown(LocalBackend):
        async def call_group(self, group: int, method: str, *args: Any) -> Any:
            if group == 1 and method in ("search", "load"):
                raise ConnectionError("replica gone")
            return await super().call_group(group, method, *args)

    backend = OneGroupDown(ServiceConfig(index=str(service_index), pixel_size=PIXELS), groups=2)
    running = Running(create_app(backend, load_tokens("", {})))
    try:
        with httpx.Client(base_url=running.url) as c:
            body = {"vector": [1.0] * 64, "k": 60}
            assert_error(c.post("/v1/search", json=body), 503, "shard groups [1]")
            part = c.post("/v1/search", json={**body, "partial": True}).json()
            assert part["partial"] is True and part["missing_shards"] == [1]
            with open_index(service_index) as reader:
                held = reader.manifest["shards"][0]["count"]
            assert len(part["results"]) == held  # only shard 0's items, never silently
            assert_error(c.get("/readyz"), 503, "shard groups [1] cannot answer")
        assert backend.metrics.shard_failures.labels("1")._value.get() == 6  # 3 tries each
    finally:
        running.stop()


def test_non_local_bind_needs_tokens(service_index) -> None:  # type: ignore[no-untyped-def]
    from echoseek.errors import ConfigError
    from echoseek.service.auth import check_bind

    with pytest.raises(ConfigError, match="not a loopback address"):
        check_bind("0.0.0.0", load_tokens("", {}))
    check_bind("0.0.0.0", load_tokens("", TOKENS))
    check_bind("127.0.0.1", load_tokens("", {}))
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_tokens("", {"ECHOSEEK_TOKENS": "short:search"})
    with pytest.raises(ConfigError, match="scope in"):
        load_tokens("", {"ECHOSEEK_TOKENS": f"{SEARCH}:root"})


def test_the_in_process_service_is_its_own_cluster(open_server: Running) -> None:
    view = httpx.get(f"{open_server.url}/v1/cluster").json()
    served = httpx.get(f"{open_server.url}/v1/index").json()["version"]
    assert view["version"] == served and len(view["ingress"]) == 1
    assert [g["group"] for g in view["groups"]] == [0, 1]  # serve_local: two groups
    row = view["ingress"][0]
    assert row["state"] == "serving" and row["versions"] == [served]
    assert row["resident_bytes"] > 50 << 20  # this test process, numpy and faiss loaded
