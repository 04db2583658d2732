"""The search endpoint under load: Ray Serve vs one uvicorn process vs in-process vs milvus-lite.

    .venv/bin/python bench/bench_service.py                       # 1 M × 128, 4 shards
    .venv/bin/python bench/bench_service.py --n 100000 --seconds 8 --fault-seconds 30

Data: the clustered 128-d mixture of bench_index.py (L2-normalised, cosine), ``--queries``
held-out points of the same mixture, ground truth by exact brute force. One index version:
``index build`` with the rule-chosen IVF-PQ parameters in 4 shards; nprobe is the smallest
power of two whose recall@10 (exact re-rank of the best 100) reaches ``--target`` on the
held-out queries, and every echoseek target searches with it.

Targets, measured side by side in this run on 127.0.0.1 only:

* ``in-process``: ``open_index(root).search`` called from N threads (the floor: no HTTP);
* ``uvicorn``: ``echoseek serve ray=false`` in its own process: the same FastAPI app and
  reader in one process, what a user would write without Ray;
* ``Ray Serve``: ``echoseek serve`` with 4 shard-group deployments, an embedder and the
  ingress (one replica each), then with one shard group; under Serve's Python proxy
  (``ingress=proxy``) and under HAProxy (``ingress=fast``, the default), each in its own
  process and Ray instance (the ingress is fixed when Ray starts);
* ``Ray Serve floor``: a FastAPI ingress making one handle call to a no-op deployment (what
  any Serve app with one hop pays on this machine), under each ingress;
* ``milvus-lite``: an IVF_FLAT collection of the same vectors (milvus-lite's IVF index), its
  nprobe the smallest power of two reaching the same recall@10.

Each target answers vector queries at concurrency 1, 8 and 32 (closed loop: every client
sends its next query when the last answer arrives) for ``--seconds`` each; image queries
(a 128×128 PNG, embedded by a ResNet-18 of the demo's shape at 32 px, untrained: latency only)
at concurrency 1 and 8. Latency percentiles are over every answered request.

Faults (Ray Serve under the default HAProxy ingress, two replicas per shard group,
concurrency 16 for ``--fault-seconds``): one replica of ShardSearcher0 is killed a third of
the way in, and a new index version is swapped in two thirds of the way in; failed requests,
the time from the kill to the last failed request, and the versions answered are counted.
Fuzzing: ``schemathesis run`` against the OpenAPI schema (``--fuzz-examples`` per operation)
plus hand-made bad bodies; any status ≥ 500 is a failure. Results go to
bench/results/service-N.json (after each phase) and the tables are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import exact_top, mixture, recall10

ROOT = Path(__file__).resolve().parents[1]
DIM = 128
CONCURRENCY = (1, 8, 32)
IMAGE_CONCURRENCY = (1, 8)
PROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
INGRESSES = ("proxy", "fast")  # Serve's Python proxy, HAProxy (echoseek.service.ingress)


# --- data, model, index ---------------------------------------------------------------------


def make_model(out: Path) -> Path:
    """A ResNet-18 embedding model of the demo's shape (1 channel, 32 px, 128-d)."""
    import torch

    from echoseek.models import ModelMeta, build_model, save_model

    torch.manual_seed(0)
    meta = ModelMeta(small_stem=True, input_size=(32, 32), mean=(0.5,), std=(0.5,))
    return save_model(build_model(meta), out, meta)


def make_index(x: np.ndarray, work: Path, model: Path) -> Path:
    """Vectors artifact + a 4-shard index version (rule-chosen params)."""
    import ray

    from echoseek.data.vectors import write_vectors
    from echoseek.index import build_index, choose_params

    ids = [f"v{i}" for i in range(len(x))]
    step = 50_000
    batches = ((ids[s : s + step], x[s : s + step]) for s in range(0, len(x), step))
    write_vectors(work / "vectors", batches, dim=DIM, model_uri=str(model))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    build_index(work / "vectors", work / "index", choose_params(len(x), DIM), num_shards=4)
    ray.shutdown()
    return work / "index"


def choose_nprobe(root: Path, q: np.ndarray, truth: np.ndarray, target: float) -> tuple[int, float]:
    from echoseek.index import open_index

    with open_index(root) as reader:
        for nprobe in PROBES:
            _, ids = reader.search(q, 10, nprobe=nprobe, rerank=True, rerank_depth=100)
            if recall10(ids, truth) >= target:
                return nprobe, recall10(ids, truth)
    raise SystemExit(f"recall@10 {target} not reached up to nprobe {PROBES[-1]}")


def query_png(seed: int = 0) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (128, 128), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# --- load generation ------------------------------------------------------------------------


def summary(latencies: list[float], failed: int, seconds: float) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "requests": len(latencies),
        "failed": failed,
        "qps": len(latencies) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def thread_load(call: Callable[[int], Any], concurrency: int, seconds: float) -> dict[str, float]:
    """Closed loop: ``concurrency`` threads calling ``call(i)`` for ``seconds``."""
    latencies: list[float] = []
    failed = [0]
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()

    def worker(w: int) -> None:
        i = w
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                call(i)
            except Exception:
                with lock:
                    failed[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
            i += concurrency

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return summary(latencies, failed[0], time.perf_counter() - start)


async def _http_load(
    url: str,
    make: Callable[[int], dict[str, Any]],
    concurrency: int,
    seconds: float,
    on_answer: Callable[[float, int, dict[str, Any]], None] | None = None,
) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    failed = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(w: int) -> None:
            nonlocal failed
            i = w
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await client.post(**make(i))
                    ok = r.status_code == 200
                    body = r.json() if ok else {}
                except httpx.HTTPError:
                    ok, body, r = False, {}, None
                t1 = time.perf_counter()
                if ok:
                    latencies.append(t1 - t0)
                else:
                    failed += 1
                if on_answer is not None:
                    on_answer(t1 - start, r.status_code if r is not None else 0, body)
                i += concurrency

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return summary(latencies, failed, time.perf_counter() - start)


def http_load(
    url: str,
    make: Callable[[int], dict[str, Any]],
    concurrency: int,
    seconds: float,
    on_answer: Any = None,
) -> dict[str, float]:
    return asyncio.run(_http_load(url, make, concurrency, seconds, on_answer))


def vector_request(q: np.ndarray, nprobe: int) -> Callable[[int], dict[str, Any]]:
    bodies = [{"vector": v.tolist(), "k": 10, "nprobe": nprobe} for v in q]
    return lambda i: {"url": "/v1/search", "json": bodies[i % len(bodies)]}


def image_request(png: bytes, nprobe: int) -> Callable[[int], dict[str, Any]]:
    body = {"image": base64.b64encode(png).decode(), "k": 10, "nprobe": nprobe}
    return lambda i: {"url": "/v1/search", "json": body}


def endpoint_rows(
    name: str, url: str, q: np.ndarray, nprobe: int, png: bytes, seconds: float
) -> list[dict[str, Any]]:
    rows = []
    http_load(url, vector_request(q, nprobe), 4, 2.0)  # warm up: first calls load pages
    for c in CONCURRENCY:
        rows.append(
            {
                "target": name,
                "query": "vector",
                "concurrency": c,
                **http_load(url, vector_request(q, nprobe), c, seconds),
            }
        )
        print(f"  {name} vector c={c}: {rows[-1]}", flush=True)
    http_load(url, image_request(png, nprobe), 2, 2.0)
    for c in IMAGE_CONCURRENCY:
        rows.append(
            {
                "target": name,
                "query": "image",
                "concurrency": c,
                **http_load(url, image_request(png, nprobe), c, seconds),
            }
        )
        print(f"  {name} image c={c}: {rows[-1]}", flush=True)
    return rows


# --- targets --------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_process_rows(root: Path, q: np.ndarray, nprobe: int, seconds: float) -> list[dict[str, Any]]:
    from echoseek.index import open_index

    rows = []
    with open_index(root) as reader:
        for c in CONCURRENCY:
            res = thread_load(lambda i: reader.search(q[i % len(q)], 10, nprobe=nprobe), c, seconds)
            rows.append(
                {
                    "target": "in-process open_index().search",
                    "query": "vector",
                    "concurrency": c,
                    **res,
                }
            )
            print(f"  in-process c={c}: {rows[-1]}", flush=True)
    return rows


@contextlib.contextmanager
def service_process(args: list[str]) -> Iterator[str]:
    """``echoseek serve ARGS`` in its own process (its own local Ray, when it uses Ray, started
    with the ingress ``args`` ask for); yields its URL once it serves."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "echoseek"), "serve", *args, f"port={port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("serving"):
            raise SystemExit(f"{' '.join(cmd)} did not start: {line}")
        print(f"  {line.strip()}", flush=True)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(120)


def uvicorn_rows(
    root: Path, model: Path, q: np.ndarray, nprobe: int, png: bytes, seconds: float
) -> list[dict[str, Any]]:
    with service_process([f"index={root}", f"model={model}", "ray=false"]) as url:
        return endpoint_rows("uvicorn, one process", url, q, nprobe, png, seconds)


def serve_file(work: Path, replicas: int, groups: int = 4) -> str:
    """serve/local.yaml's application with ``groups`` shard-group deployments of ``replicas``
    replicas each and one ingress replica; ``groups=0`` (``colocate=true``): no searchers,
    ``replicas`` ingress replicas."""
    import yaml

    data = yaml.safe_load((ROOT / "serve" / "local.yaml").read_text())
    app = data["applications"][0]
    light = {"num_cpus": 0.1}
    keep = [d for d in app["deployments"] if d["name"] in ("SearchIngress", "Embedder")]
    ingress = next(d for d in keep if d["name"] == "SearchIngress")
    ingress.update(num_replicas=1 if groups else replicas, ray_actor_options=light)
    searchers = [
        {
            "name": f"ShardSearcher{g}",
            "num_replicas": replicas,
            "ray_actor_options": light,
            "max_ongoing_requests": 64,
        }
        for g in range(groups)
    ]
    app["deployments"] = keep + searchers
    path = work / f"serve-{replicas}-{groups}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def serve_floor_rows(q: np.ndarray, seconds: float) -> list[dict[str, Any]]:
    """Serve's floor under each ingress, each in its own process (the ingress is chosen when
    Ray starts): ``--floor INGRESS`` runs :func:`floor_rows` and prints its rows as JSON."""
    rows = []
    for ingress in INGRESSES:
        cmd = [sys.executable, __file__, "--floor", ingress, "--seconds", str(seconds)]
        cmd += ["--n", str(len(q)), "--queries", str(len(q))]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
        found = json.loads(out.stdout.strip().splitlines()[-1])
        for row in found:
            print(f"  {row['target']} c={row['concurrency']}: {row}", flush=True)
        rows += found
    return rows


def floor_rows(ingress: str, q: np.ndarray, seconds: float) -> list[dict[str, Any]]:
    """Ray Serve's own floor here: a FastAPI ingress that makes one handle call to a
    deployment returning at once (ingress -> one hop), the same load."""
    from fastapi import Body, FastAPI
    from ray import serve

    from echoseek.ray_session import ensure_ray
    from echoseek.service.ingress import LABELS, prepare_ingress

    kind, note = prepare_ingress(ingress, joining=False)
    assert kind == ingress, note

    app = FastAPI()
    json_body = Body(...)

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    class Echo:
        def search(self, vector: list) -> int:  # type: ignore[type-arg]
            return len(vector)

    @serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256)
    @serve.ingress(app)
    class Floor:
        def __init__(self, echo: Any) -> None:
            self.echo = echo

        @app.post("/v1/search")
        async def search(self, body: dict = json_body) -> dict:  # type: ignore[type-arg]
            # "dict" resolves anywhere; a name imported here would not resolve in the replica
            # (this module is pickled by value: its annotations are strings)
            return {"n": await self.echo.search.remote(body["vector"])}

    ensure_ray()
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Floor.bind(Echo.bind()), name="floor", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        http_load(url, vector_request(q, 1), 4, 2.0)
        rows = []
        for c in CONCURRENCY:
            rows.append(
                {
                    "target": f"Ray Serve floor ({LABELS[kind]}): ingress + 1 no-op hop",
                    "query": "vector",
                    "concurrency": c,
                    **http_load(url, vector_request(q, 1), c, seconds),
                }
            )
            print(f"  serve floor c={c}: {rows[-1]}", file=sys.stderr, flush=True)
        return rows
    finally:
        serve.shutdown()


def serve_rows(
    root: Path, model: Path, q: np.ndarray, nprobe: int, png: bytes, seconds: float
) -> list[dict[str, Any]]:
    """The endpoint under Serve's proxy and under HAProxy, each with the 4 shards in 4 groups
    (a fan-out of 4 hops per query), then in one group (one hop; the group searches its 4
    shards in its own threads); then under HAProxy with the shards searched inside one and
    two ingress replicas (``colocate``: no hop). Each in its own process: the ingress is fixed
    as Ray starts."""
    from echoseek.service.ingress import LABELS

    layouts = [(ingress, groups, 1) for ingress in INGRESSES for groups in (4, 1)]
    rows = []
    for ingress, groups, replicas in [*layouts, ("fast", 0, 1), ("fast", 0, 2)]:
        args = [serve_file(root.parent, replicas, groups), f"index={root}", f"model={model}"]
        args += ['dataset=""', f"shard_groups={groups}", f"colocate={str(groups == 0).lower()}"]
        name = f"Ray Serve ({LABELS[ingress]}), " + (
            f"{groups} shard group{'s' * (groups > 1)}"
            if groups
            else f"shards in the ingress ({replicas} replica{'s' * (replicas > 1)})"
        )
        with service_process([*args, f"ingress={ingress}"]) as url:
            rows += endpoint_rows(name, url, q, nprobe, png, seconds)
    return rows


def milvus_rows(
    x: np.ndarray, q: np.ndarray, truth: np.ndarray, target: float, seconds: float, work: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(work / "milvus.db"))
    start = time.perf_counter()
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    nlist = int(4 * np.sqrt(len(x)))
    index.add_index("vector", index_type="IVF_FLAT", metric_type="IP", params={"nlist": nlist})
    client.create_collection("bench", schema=schema, index_params=index)
    for s in range(0, len(x), 20_000):
        rows = [{"id": s + j, "vector": v} for j, v in enumerate(x[s : s + 20_000].tolist())]
        client.insert("bench", rows)
    client.flush("bench")
    client.load_collection("bench")
    build_s = time.perf_counter() - start

    def search(v: np.ndarray, nprobe: int, limit: int = 10) -> Any:
        return client.search(
            "bench",
            data=v.tolist(),
            limit=limit,
            output_fields=[],
            search_params={"params": {"nprobe": nprobe}},
        )

    chosen = None
    for nprobe in PROBES:
        found = search(q, nprobe)
        ids = np.array([[h["id"] for h in row] for row in found])
        if recall10(ids, truth) >= target:
            chosen = (nprobe, recall10(ids, truth))
            break
    if chosen is None:
        raise SystemExit("milvus-lite: target recall not reached")
    nprobe, rec = chosen
    rows = []
    for c in CONCURRENCY:
        res = thread_load(lambda i: search(q[i % len(q)][None, :], nprobe), c, seconds)
        rows.append(
            {
                "target": f"milvus-lite IVF_FLAT nlist={nlist}",
                "query": "vector",
                "concurrency": c,
                **res,
            }
        )
        print(f"  milvus-lite c={c}: {rows[-1]}", flush=True)
    described = client.describe_index("bench", index_name="vector")  # the index really built
    client.close()
    return rows, {
        "nprobe": nprobe,
        "recall@10": rec,
        "build_s": build_s,
        "nlist": nlist,
        "index": described,
    }


# --- faults and fuzzing ---------------------------------------------------------------------


def fault_run(
    root: Path, model: Path, q: np.ndarray, nprobe: int, seconds: float
) -> dict[str, Any]:
    """Kill a shard replica, then swap versions, under concurrency-16 load (Ray Serve)."""
    import httpx
    import ray

    from echoseek.index.publish import read_latest
    from echoseek.index.update import add_vectors
    from echoseek.service.config import ServiceConfig
    from echoseek.service.run import start_service

    cfg = ServiceConfig(index=str(root), model=str(model), shard_groups=4, port=free_port())
    running = start_service(cfg, serve_config=serve_file(root.parent, 2))
    old = running.version
    events: dict[str, float] = {}
    answers: list[tuple[float, int, str]] = []

    def record(t: float, status: int, body: dict[str, Any]) -> None:
        answers.append((t, status, body.get("index_version", "")))

    def faults() -> None:
        time.sleep(seconds / 3)
        name = next(
            a
            for a in ray.util.list_named_actors(all_namespaces=True)
            if "ShardSearcher0" in a["name"]
        )
        ray.kill(ray.get_actor(name["name"], namespace=name["namespace"]), no_restart=True)
        events["kill"] = time.perf_counter() - t0
        watch = threading.Thread(
            target=lambda: events.update(replacement_times(t0, "ShardSearcher0", replicas=2))
        )
        watch.start()  # Serve's own view of the replicas, polled while the load goes on
        time.sleep(seconds / 3 - 2)
        more = np.random.default_rng(7).normal(size=(1000, DIM)).astype(np.float32)
        add_vectors(root, more, ids=[f"new{i}" for i in range(1000)])
        events["swap_start"] = time.perf_counter() - t0
        r = httpx.post(f"{running.url}/v1/admin/index", json={"version": "latest"}, timeout=120)
        events["swap_done"] = time.perf_counter() - t0
        events["swap_status"] = r.status_code
        watch.join()

    try:
        http_load(running.url, vector_request(q, nprobe), 4, 2.0)
        t0 = time.perf_counter()
        thread = threading.Thread(target=faults)
        thread.start()
        res = http_load(running.url, vector_request(q, nprobe), 16, seconds, record)
        thread.join()
    finally:
        running.stop()
    new = read_latest(root)
    kill = events["kill"]
    failed_after = [t for t, s, _ in answers if s != 200 and t >= kill]
    in_swap = [a for a in answers if events["swap_start"] <= a[0]]
    return {
        **res,
        "failed_pct": 100 * res["failed"] / max(1, res["requests"] + res["failed"]),
        "kill_at_s": kill,
        "last_failure_after_kill_s": (max(failed_after) - kill) if failed_after else 0.0,
        "replica_gone_after_kill_s": events["gone"] - kill,
        "replacement_running_after_kill_s": events["replaced"] - kill,
        "swap_s": events["swap_done"] - events["swap_start"],
        "swap_status": events["swap_status"],
        "failed_during_swap": sum(s != 200 for _, s, _ in in_swap),
        "versions": sorted({v for _, _, v in answers if v}),
        "ingress": running.ingress,
        "old": old,
        "new": new,
    }


def replacement_times(t0: float, deployment: str, replicas: int) -> dict[str, float]:
    """Seconds since ``t0`` when Serve's controller saw ``deployment`` below ``replicas``
    running replicas (``gone``), and when it had ``replicas`` running again (``replaced``),
    polled every 0.1 s from Serve's own status."""
    from ray import serve

    from echoseek.service.run import APP_NAME

    def running() -> int:
        states = serve.status().applications[APP_NAME].deployments[deployment].replica_states
        return int(states.get("RUNNING", 0))

    times: dict[str, float] = {}
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        now, n = time.perf_counter() - t0, running()
        if "gone" not in times and n < replicas:
            times["gone"] = now
        elif "gone" in times and n >= replicas:
            times["replaced"] = now
            return times
        time.sleep(0.1)
    raise SystemExit(f"{deployment}: no replacement replica running within 120 s")


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("not JSON", b"{not json", "application/json"),
    ("NaN vector", b'{"vector": [' + b",".join([b"NaN"] * DIM) + b"]}", "application/json"),
    ("short vector", b'{"vector": [1.0, 2.0]}', "application/json"),
    ("k = 0", b'{"vector": [' + b",".join([b"1"] * DIM) + b'], "k": 0}', "application/json"),
    (
        "k = 10^9",
        b'{"vector": [' + b",".join([b"1"] * DIM) + b'], "k": 1000000000}',
        "application/json",
    ),
    (
        "unknown distance",
        b'{"vector": [' + b",".join([b"1"] * DIM) + b'], "rerank": "nope"}',
        "application/json",
    ),
    ("deep JSON", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (
        "non-image bytes",
        b'{"image": "' + base64.b64encode(b"\0" * 300) + b'"}',
        "application/json",
    ),
    ("oversized body", b'{"vector": [' + b"1," * 5_000_000 + b"1]}", "application/json"),
    ("wrong content type", b"vector=1", "text/plain"),
]


def bomb_body() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(out, format="PNG")  # 900 M pixels, ~100 kB
    return b'{"image": "' + base64.b64encode(out.getvalue()) + b'"}'


def answered(url: str) -> dict[int, int]:
    """Requests the service has answered so far, by status, from its own ``/metrics``
    (``echoseek_requests_total``, every route; one ingress replica, so one registry). The
    scrape itself counts once, after it is answered."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[int, int] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "echoseek_requests_total":
                status = int(sample.labels["status"])
                counts[status] = counts.get(status, 0) + int(sample.value)
    return counts


def fuzz(url: str, examples: int, work: Path) -> dict[str, Any]:
    """schemathesis against the OpenAPI schema, then the hand-made bad bodies. The generated
    requests are counted by the service (:func:`answered`); a 5xx that escaped the counting
    middleware would still fail schemathesis's ``not_a_server_error`` check (its exit code)."""
    import httpx

    schemathesis = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    cmd = [
        schemathesis,
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(examples),
        "--no-color",
        "--seed",
        "0",
    ]
    before = answered(url)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    after = answered(url)
    statuses = {
        k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] > before.get(k, 0)
    }
    hand: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, body, kind in [
            *BAD_BODIES,
            ("decompression bomb", bomb_body(), "application/json"),
        ]:
            r = client.post("/v1/search", content=body, headers={"content-type": kind})
            hand[name] = r.status_code
    return {
        "schemathesis_exit": done.returncode,
        "schemathesis_tail": done.stdout.strip().splitlines()[-3:],
        "generated_requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500)
        + sum(s >= 500 for s in hand.values()),
        "hand_made": hand,
        "seconds": seconds,
    }


# --- main -----------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| target | query | concurrency | requests | failed | QPS | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['query']} | {r['concurrency']} | {r['requests']} | "
            f"{r['failed']} | {r['qps']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--fault-seconds", type=float, default=60.0)
    parser.add_argument("--fuzz-examples", type=int, default=1200)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="targets to skip: load milvus fuzz faults"
    )
    parser.add_argument("--floor", choices=INGRESSES, help=argparse.SUPPRESS)  # one child run
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.floor:
        q = mixture(args.queries, DIM, 10, seed=1)
        print(json.dumps(floor_rows(args.floor, q, args.seconds)))
        return
    import faiss

    faiss.omp_set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    try:
        data = mixture(args.n + args.queries, DIM, args.clusters, seed=0)
        x, q = data[: args.n], data[args.n :]
        truth = exact_top(x, q, 10)
        model = make_model(work / "model")
        start = time.perf_counter()
        root = make_index(x, work, model)
        build_s = time.perf_counter() - start
        nprobe, rec = choose_nprobe(root, q, truth, args.target)
        print(f"index built in {build_s:.0f} s; nprobe {nprobe} reaches recall@10 {rec:.3f}")
        png = query_png()
        rows: list[dict[str, Any]] = []
        result: dict[str, Any] = {"n": args.n, "dim": DIM, "shards": 4, "nprobe": nprobe,
                                  "recall@10": rec, "build_s": build_s, "rows": rows,
                                  "cpus": os.cpu_count()}  # fmt: skip
        out = ROOT / "bench" / "results" / f"service-{args.n}.json"
        out.parent.mkdir(parents=True, exist_ok=True)

        def save() -> None:
            """What is measured so far: a later phase that fails keeps the earlier ones."""
            out.write_text(json.dumps(result, indent=2, default=str))

        if "load" not in args.skip:
            rows += in_process_rows(root, q, nprobe, args.seconds)
            rows += uvicorn_rows(root, model, q, nprobe, png, args.seconds)
            save()
            rows += serve_floor_rows(q, args.seconds)
            rows += serve_rows(root, model, q, nprobe, png, args.seconds)
            save()
        if "milvus" not in args.skip:
            more, result["milvus"] = milvus_rows(x, q, truth, args.target, args.seconds, work)
            rows += more
            save()
        if "faults" not in args.skip:
            result["faults"] = fault_run(root, model, q, nprobe, args.fault_seconds)
            print(f"faults: {json.dumps(result['faults'], default=str)}", flush=True)
            save()
        if "fuzz" not in args.skip:
            from echoseek.service.config import ServiceConfig
            from echoseek.service.run import start_service

            running = start_service(
                ServiceConfig(index=str(root), model=str(model), shard_groups=4, port=free_port())
            )
            try:
                result["fuzz"] = fuzz(running.url, args.fuzz_examples, work)
            finally:
                running.stop()
            print(f"fuzz: {json.dumps(result['fuzz'], default=str)}", flush=True)
            save()
        print(table(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
