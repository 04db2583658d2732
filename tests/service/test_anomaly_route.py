"""``POST /v1/anomaly`` over the in-process backend (real uvicorn, real HTTP client): the kNN
score against a brute-force reference, a stored item never counting itself, percentiles,
images, auth and the 4xx answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from echoseek.baseline import pixel_embed
from echoseek.evaluation.anomaly import knn_scores
from echoseek.index import open_index
from echoseek.service.config import Limits, ServiceConfig
from tests.service.conftest import PIXELS, frame
from tests.service.test_http import SEARCH, TOKENS, Running, assert_error, png_b64, serve_local


@pytest.fixture(scope="module")
def server(service_index: Path, service_dataset: Path) -> Iterator[Running]:
    cfg = ServiceConfig(
        index=str(service_index),
        dataset=str(service_dataset),
        pixel_size=PIXELS,
        limits=Limits(max_k=20, max_batch=4, max_body_bytes=200_000, max_image_pixels=1_000_000),
    )
    running = serve_local(cfg, env=TOKENS)
    yield running
    running.stop()


@pytest.fixture
def client(server: Running) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {SEARCH}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def stored(service_index: Path) -> tuple[list[str], np.ndarray]:
    with open_index(service_index) as reader:
        return reader.live_items()


def test_a_vector_scores_as_the_brute_force_reference(client, stored) -> None:  # type: ignore[no-untyped-def]
    _, vectors = stored
    rng = np.random.default_rng(0)
    query = vectors[5] + 0.3 * rng.normal(size=vectors.shape[1]).astype(np.float32)
    query /= np.linalg.norm(query)
    r = client.post("/v1/anomaly", json={"vector": query.tolist(), "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["score"] == pytest.approx(knn_scores(query[None], vectors, 4)[0], abs=2e-3)
    assert len(body["neighbours"]) == 4 and body["k"] == 4 and body["normal_sample"] == 60
    assert [h["distance"] for h in body["neighbours"]] == sorted(
        h["distance"] for h in body["neighbours"]
    )
    assert 0.0 <= body["percentile"] <= 100.0 and body["model"] == "pixels"


def test_a_stored_item_never_counts_itself(client, stored) -> None:  # type: ignore[no-untyped-def]
    ids, vectors = stored
    body = client.post("/v1/anomaly", json={"id": 33, "k": 3}).json()
    assert 33 not in [h["id"] for h in body["neighbours"]]
    expected = knn_scores(vectors[33:34], vectors, 3, [ids[33]], ids)[0]
    assert body["score"] == pytest.approx(expected, abs=2e-3) and body["score"] > 1e-3


def test_percentiles_rank_against_the_stored_items(client, stored) -> None:  # type: ignore[no-untyped-def]
    _, vectors = stored
    far = np.random.default_rng(1).normal(size=vectors.shape[1])  # unlike any frame
    outlier = client.post("/v1/anomaly", json={"vector": far.tolist(), "k": 3}).json()
    normal = client.post("/v1/anomaly", json={"id": 10, "k": 3}).json()
    assert outlier["percentile"] == 100.0 and outlier["score"] > normal["score"]
    assert normal["percentile"] < 100.0


def test_an_image_scores_as_its_vector(client, service_dataset) -> None:  # type: ignore[no-untyped-def]
    image = frame(service_dataset, 7)
    by_image = client.post("/v1/anomaly", json={"image": png_b64(image), "k": 3}).json()
    vector = pixel_embed([image], PIXELS)[0].tolist()
    by_vector = client.post("/v1/anomaly", json={"vector": vector, "k": 3}).json()
    assert by_image["score"] == pytest.approx(by_vector["score"], abs=1e-6)
    assert by_image["neighbours"][0]["frame_index"] == 7  # the frame itself is a stored item


def test_bad_requests_get_4xx_naming_the_problem(client, server) -> None:  # type: ignore[no-untyped-def]
    vector = [1.0] * PIXELS * PIXELS
    assert_error(client.post("/v1/anomaly", json={"vector": vector, "k": 0}), 400, "k: must be")
    assert_error(client.post("/v1/anomaly", json={"vector": vector, "k": 21}), 400, "1..20")
    assert_error(client.post("/v1/anomaly", json={"k": 3}), 400, "exactly one of")
    assert_error(client.post("/v1/anomaly", json={"vector": [1.0, 2.0]}), 400, "expected 64")
    assert_error(client.post("/v1/anomaly", json={"id": 600}), 404, "not in index version")
    assert_error(client.post("/v1/anomaly", json={"vector": vector, "x": 1}), 422, "x")
    assert_error(client.post("/v1/anomaly", json={"image": "not base64!"}), 400, "image")
    with httpx.Client(base_url=server.url) as anonymous:
        assert_error(anonymous.post("/v1/anomaly", json={"vector": vector}), 401, "Bearer")
    metrics = client.get("/metrics").text
    assert 'route="/v1/anomaly"' in metrics
