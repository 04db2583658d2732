"""The Serve application on the test session's Ray: real deployments, real HTTP on 127.0.0.1.

Two shard groups of two replicas each, the embedder and the ingress. Checked: answers equal
the in-process backend's, a swap while requests run (no errors; each answer names the old or
the new version), and a killed shard replica (the request goes to the other replica).
"""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from echoseek.index.publish import read_latest
from echoseek.index.update import add_vectors
from tests.service.conftest import (
    PIXELS,
    frame,
    free_port,
    publish_model_version,
    random_model,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ENDPOINT: dict[str, Any] = {}  # the fixture's config and Serve file, for redeploying


@pytest.fixture(scope="module")
def endpoint(
    ray_session: Any, index_root_copy_module: Path, service_dataset: Path, tmp_path_factory: Any
) -> Iterator[str]:
    """serve/local.yaml with two shard groups of two replicas each, deployed as
    ``echoseek serve`` deploys a Serve config file."""
    from echoseek.service.config import ServiceConfig
    from echoseek.service.run import start_service

    data = yaml.safe_load((ROOT / "serve" / "local.yaml").read_text())
    deployments = data["applications"][0]["deployments"]
    searcher = {"name": "ShardSearcher0", "num_replicas": 2, "max_ongoing_requests": 64}
    deployments += [searcher, {**searcher, "name": "ShardSearcher1"}]
    for d in deployments:
        d["ray_actor_options"] = {"num_cpus": 0.05}  # the session's 2 CPUs stay for others
    path = tmp_path_factory.mktemp("serve_cfg") / "serve.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = ServiceConfig(
        index=str(index_root_copy_module),
        dataset=str(service_dataset),
        pixel_size=PIXELS,
        shard_groups=2,
        port=free_port(),
    )
    running = start_service(cfg, serve_config=str(path))
    ENDPOINT.update(cfg=cfg, path=str(path), running=running)
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def index_root_copy_module(service_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    root = tmp_path_factory.mktemp("serve_index") / "index"
    shutil.copytree(service_index, root)
    return root


def png_b64(image: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def listeners(port: int) -> set[str]:
    """Names of the processes listening on TCP ``port`` (from /proc: Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()  # sl local_address rem_address st ... inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    names = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) in inodes:
                names.add((fd.parent.parent / "comm").read_text().strip())
        except OSError:  # a process or descriptor gone meanwhile
            continue
    return names


def test_image_query_over_serve(
    endpoint: str, service_dataset: Path, index_root_copy_module: Path
) -> None:
    body = {"image": png_b64(frame(service_dataset, 9)), "k": 4}
    r = httpx.post(f"{endpoint}/v1/search", json=body, timeout=30)
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["results"][0]["frame_index"] == 9 and found["model"] == "pixels"
    assert found["index_version"] == read_latest(index_root_copy_module)
    assert httpx.get(f"{endpoint}/v1/items/9/thumbnail").headers["content-type"] == "image/png"
    bad = httpx.post(f"{endpoint}/v1/search", json={"vector": [1.0]})
    assert bad.status_code == 400 and "expected 64 numbers" in bad.json()["error"]["message"]
    mark = {"id": 9, "label": 1, "mark": "positive", "query": "item:9"}
    stored = httpx.post(f"{endpoint}/v1/feedback", json=mark, timeout=30).json()["mark"]
    assert stored["item"] == found["results"][0]["item"]
    log = index_root_copy_module / "feedback.jsonl"
    assert log.read_text().count("\n") == 1  # the replica wrote the index root's log
    marks = httpx.get(f"{endpoint}/v1/feedback/marks", params={"item": stored["item"]}).json()
    assert marks["marks"][stored["item"]]["label"] == 1


def test_swap_under_load_then_a_killed_shard_replica(
    endpoint: str, index_root_copy_module: Path
) -> None:
    import ray

    old = read_latest(index_root_copy_module)
    add_vectors(
        index_root_copy_module, np.ones((4, 64), np.float32), ids=[f"b:{i}" for i in range(4)]
    )
    new = read_latest(index_root_copy_module)
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=endpoint, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/search", json={"vector": [1.0] * 64, "k": 3})
                seen.append((r.status_code, r.json().get("index_version", r.text)))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    doc = httpx.post(f"{endpoint}/v1/admin/index", json={"version": "latest"}, timeout=60).json()
    time.sleep(1.0)
    stop.set()
    for w in workers:
        w.join()
    assert doc["version"] == new and doc["ntotal"] == 64
    assert seen and {s for s, _ in seen} == {200}, seen[:5]
    versions = [v for _, v in seen]
    assert set(versions) == {old, new}
    first_new = versions.index(new)
    assert old not in versions[first_new + 8 :]  # 4 clients: at most one old answer in flight each

    replicas = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if "ShardSearcher1" in a["name"]
    ]
    assert len(replicas) == 2
    ray.kill(
        ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True
    )
    answers = [
        httpx.post(f"{endpoint}/v1/search", json={"vector": [1.0] * 64, "k": 64}, timeout=60)
        for _ in range(10)
    ]
    assert [a.status_code for a in answers] == [200] * 10
    assert all(len(a.json()["results"]) == 64 and not a.json()["partial"] for a in answers)


def cluster_view(url: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v1/cluster", timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def converge(url: str, version: str) -> None:
    """Wait (≤ 20 s) until every ingress replica serves ``version`` (``GET /v1/cluster``)."""
    deadline = time.monotonic() + 20
    while True:
        view = cluster_view(url)
        if view["version"] == version and all(r["versions"] == [version] for r in view["ingress"]):
            return
        assert time.monotonic() < deadline, view
        time.sleep(0.1)


def test_a_swap_reaches_every_ingress_replica(endpoint: str) -> None:
    """With the ingress scaled to two replicas, POST /v1/admin/index reaches one of them; the
    other follows the board, and GET /v1/cluster shows every replica, its node and what it
    serves."""
    from echoseek.service.run import deploy, serve_schema

    root = Path(ENDPOINT["cfg"].index)
    schema = serve_schema(ENDPOINT["cfg"], ENDPOINT["path"])
    ingress = next(d for d in schema.applications[0].deployments if d.name == "SearchIngress")
    ingress.num_replicas = 2
    deploy(schema)
    deadline = time.monotonic() + 90
    while True:  # both ingress replicas reported; a killed searcher's report aged out
        view = cluster_view(endpoint)
        shape = [len(view["ingress"]), *(len(g["replicas"]) for g in view["groups"])]
        if shape == [2, 2, 2]:
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    for row in [*view["ingress"], *(r for g in view["groups"] for r in g["replicas"])]:
        assert row["node_id"] and row["resident_bytes"] > 50 << 20 and row["state"] == "serving"
        assert view["version"] in row["versions"]

    add_vectors(
        root, np.full((4, PIXELS * PIXELS), 0.5, np.float32), ids=[f"e:{i}" for i in range(4)]
    )
    new = read_latest(root)
    swapped = httpx.post(f"{endpoint}/v1/admin/index", json={"version": new}, timeout=60)
    assert swapped.status_code == 200 and swapped.json()["version"] == new
    converge(endpoint, new)
    answers = [
        httpx.post(f"{endpoint}/v1/search", json={"vector": [0.5] * 64, "k": 3}, timeout=30)
        for _ in range(20)
    ]
    assert {a.json()["index_version"] for a in answers} == {new}  # whichever replica answers
    ingress.num_replicas = 1  # as the module's later tests expect
    deploy(schema)


def requests_served(url: str) -> float:
    """The ingress replica's count of answered /v1/search requests (from /metrics)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('echoseek_requests_total{route="/v1/search",status="200"}'):
            return float(line.split()[-1])
    return 0.0


def test_serve_deploy_with_a_changed_user_config_swaps_in_place(
    endpoint: str, index_root_copy_module: Path
) -> None:
    from echoseek.index.publish import list_versions
    from echoseek.service.run import deploy, serve_schema

    serving = httpx.get(f"{endpoint}/v1/index").json()["version"]
    other = next(v for v in list_versions(index_root_copy_module) if v != serving)
    before = requests_served(endpoint)
    assert before > 0
    schema = serve_schema(ENDPOINT["cfg"], ENDPOINT["path"])
    ingress = next(d for d in schema.applications[0].deployments if d.name == "SearchIngress")
    ingress.user_config = {"version": other}
    deploy(schema)
    wait_for_index_field(endpoint, "version", other)
    found = httpx.post(f"{endpoint}/v1/search", json={"vector": [1.0] * 64, "k": 3}).json()
    assert found["index_version"] == other
    assert requests_served(endpoint) > before  # the same replica: reconfigured, not restarted


def wait_for_index_field(endpoint: str, field: str, want: str, seconds: float = 120) -> None:
    """Poll ``/v1/index`` until ``field`` is ``want``: a redeployed replica may take its time
    to answer while it reconfigures (a loaded machine: a slow answer, not a failure)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{endpoint}/v1/index", timeout=30).json()[field] == want:
                return
        except httpx.TimeoutException:
            pass
        assert time.monotonic() < deadline, f"/v1/index never showed {field} {want}"
        time.sleep(0.5)


def test_serve_deploy_with_a_new_embedder_model_swaps_the_query_model(
    endpoint: str, service_dataset: Path, tmp_path: Path
) -> None:
    from echoseek.service.run import deploy, serve_schema

    random_model(tmp_path / "model")
    body = {"image": png_b64(frame(service_dataset, 9)), "k": 60}
    before = httpx.post(f"{endpoint}/v1/search", json=body, timeout=30).json()
    assert before["model"] == "pixels"
    schema = serve_schema(ENDPOINT["cfg"], ENDPOINT["path"])
    embedder = next(d for d in schema.applications[0].deployments if d.name == "Embedder")
    embedder.user_config = {"model": str(tmp_path / "model")}
    deploy(schema)
    wait_for_index_field(endpoint, "model", str(tmp_path / "model"))
    after = httpx.post(f"{endpoint}/v1/search", json=body, timeout=30).json()
    assert after["model"] == str(tmp_path / "model")
    scores = [[h["score"] for h in r["results"]] for r in (before, after)]
    assert not np.allclose(scores[0], scores[1])  # another model embedded the same image
    vector = httpx.post(f"{endpoint}/v1/search", json={"vector": [1.0] * 64, "k": 3}).json()
    assert vector["model"] == "pixels"  # vectors given by the client: the index's own model


def test_a_swap_to_a_version_of_another_model_waits_for_the_embedder(
    endpoint: str, service_dataset: Path, index_root_copy_module: Path, tmp_path: Path
) -> None:
    """On Serve the Embedder is its own deployment: a version built by a model it does not
    serve is refused (409, saying what to deploy); one built by the model it serves (the one
    the test above deployed) is swapped in."""
    served = httpx.get(f"{endpoint}/v1/index").json()
    other = random_model(tmp_path / "other", seed=1)
    refused = publish_model_version(service_dataset, other, index_root_copy_module, tmp_path / "a")
    r = httpx.post(f"{endpoint}/v1/admin/index", json={"version": refused}, timeout=60)
    assert r.status_code == 409 and "deploy that model first" in r.json()["error"]["message"]
    assert httpx.get(f"{endpoint}/v1/index").json()["version"] == served["version"]
    model = Path(served["model"])  # what the Embedder serves now
    ok = publish_model_version(service_dataset, model, index_root_copy_module, tmp_path / "b")
    doc = httpx.post(f"{endpoint}/v1/admin/index", json={"version": ok}, timeout=60).json()
    assert doc["version"] == ok and doc["model"] == str(model)
    body = {"image": png_b64(frame(service_dataset, 9)), "k": 3}
    found = httpx.post(f"{endpoint}/v1/search", json=body, timeout=30).json()
    assert found["results"][0]["frame_index"] == 9 and found["index_version"] == ok
