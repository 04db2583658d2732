"""``colocate=true`` on the test session's Ray: no ShardSearcher deployments; the ingress
replica searches every shard in its own process. Answers equal the in-process backend's, and
a swap switches it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from echoseek.index.publish import read_latest
from echoseek.index.update import add_vectors
from echoseek.service.backend import LocalBackend
from echoseek.service.config import ServiceConfig
from echoseek.service.run import start_service
from tests.service.conftest import PIXELS, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_shards_searched_inside_the_ingress_replicas(
    ray_session: Any, service_index: Path, tmp_path: Path
) -> None:
    from ray import serve

    root = tmp_path / "index"
    shutil.copytree(service_index, root)
    data = yaml.safe_load((ROOT / "serve" / "local.yaml").read_text())
    app = data["applications"][0]
    app["deployments"] = [d for d in app["deployments"] if d["name"] == "SearchIngress"]
    app["deployments"][0].update(num_replicas=1, ray_actor_options={"num_cpus": 0.05})
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(data))
    cfg = ServiceConfig(
        index=str(root), model="pixels", pixel_size=PIXELS, colocate=True, port=free_port()
    )
    running = start_service(cfg, serve_config=str(tmp_path / "serve.yaml"))
    try:
        deployments = serve.status().applications["echoseek"].deployments
        assert set(deployments) == {"SearchIngress", "Embedder"}
        vectors = np.random.default_rng(0).normal(size=(5, PIXELS * PIXELS)).astype(np.float32)
        local = LocalBackend(ServiceConfig(index=str(root), model="pixels", pixel_size=PIXELS))
        for v in vectors:
            body = {"vector": v.tolist(), "k": 6}
            got = httpx.post(f"{running.url}/v1/search", json=body, timeout=30).json()
            want = local._groups[0].search(local.served.version, v[None], 6, None, None)[0]
            assert [h["id"] for h in got["results"]] == [h["id"] for h in want]
        add_vectors(root, np.ones((3, PIXELS * PIXELS), np.float32), ids=["c:0", "c:1", "c:2"])
        new = read_latest(root)
        swapped = httpx.post(
            f"{running.url}/v1/admin/index", json={"version": "latest"}, timeout=60
        )
        assert swapped.status_code == 200 and swapped.json()["version"] == new
        after = httpx.post(f"{running.url}/v1/search", json={"id": 60, "k": 1}, timeout=30)
        assert after.json()["index_version"] == new and after.json()["results"][0]["id"] in (
            60,
            61,
            62,
        )
    finally:
        running.stop()
