"""The search service on a simulated 4-node cluster that loses a worker node under load, then
swaps to a new version (run as a script by tests/service/test_cluster_serve.py, in its own
process: it starts its own Ray cluster).

``python -m tests.cluster_serve OUT_DIR`` starts a head with no CPUs and three worker nodes
(1 CPU, 3 GiB of memory each), publishes a 4-shard index of 20 000 clustered vectors, and
runs ``echoseek serve serve/multinode.local.yaml`` against the cluster through
``RAY_ADDRESS``, as a user would. Then, with two clients in a closed loop on 127.0.0.1:

1. it removes a worker node that holds a shard replica (and not the ingress replica);
2. it publishes a new version and swaps to it with ``POST /v1/admin/index``.

It prints one JSON line: every answer's status and version, the cluster views before and after
(``GET /v1/cluster``), the removed node, how long the swap took to reach every replica, and
the top-10 ids of fixed queries from the cluster and from the same two shard groups in one
process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from echoseek.data.vectors import write_vectors
from echoseek.index import build_index, choose_params
from echoseek.index.publish import read_latest
from echoseek.index.update import add_vectors
from tests.index_fixtures import clustered
from tests.script_process import ROOT

N, DIM, SHARDS, QUERIES = 20_000, 64, 4, 20


def publish(out: Path) -> tuple[Path, np.ndarray]:
    """A 4-shard IVF index of ``N`` clustered vectors (model ``pixels``: 8×8) and queries."""
    x = clustered(N, DIM, 50, seed=5)
    write_vectors(out / "vectors", [([f"v{i}" for i in range(N)], x)], DIM, "pixels")
    params = choose_params(N, DIM, nlist=64)
    build_index(out / "vectors", out / "index", params, num_shards=SHARDS, use_ray=False)
    return out / "index", x[:QUERIES] + 0.01


def start_service(address: str, out: Path, index: Path, port: int) -> subprocess.Popen[str]:
    args = [str(Path(sys.executable).parent / "echoseek"), "serve", "serve/multinode.local.yaml",
            f"index={index}", f"node_cache={out / 'cache'}", f"port={port}"]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": address}
    log = open(out / "serve.log", "w")  # noqa: SIM115 - the child writes it while it runs
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log, text=True)


def wait_ready(url: str, proc: subprocess.Popen[str], out: Path) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the service did not start: " + (out / "serve.log").read_text())
        time.sleep(0.5)


def view(url: str) -> dict[str, Any]:
    """``GET /v1/cluster`` (an empty view while it answers anything but 200)."""
    answer = httpx.get(f"{url}/v1/cluster", timeout=30)
    if answer.status_code != 200:
        return {"version": "", "ingress": [], "groups": []}
    return dict(answer.json())


def settled(url: str, version: str, deadline_s: float = 120) -> dict[str, Any]:
    """The cluster view once every replica (2 per group, the ingress) serves ``version``."""
    deadline = time.monotonic() + deadline_s
    while True:
        v = view(url)
        rows = [*v["ingress"], *(r for g in v["groups"] for r in g["replicas"])]
        shape = [len(v["ingress"]), *(len(g["replicas"]) for g in v["groups"])]
        if shape == [1, 2, 2] and all(version in r["versions"] for r in rows):
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster never settled on {version}: {v}")
        time.sleep(0.25)


class Load:
    """Clients in a closed loop on ``/v1/search``, recording (status, version) per answer."""

    def __init__(self, url: str, queries: np.ndarray, clients: int = 2) -> None:
        self.answers: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(url, queries), daemon=True)
            for _ in range(clients)
        ]
        for t in self.threads:
            t.start()

    def run(self, url: str, queries: np.ndarray) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            i = 0
            while not self.stop.is_set():
                body = {"vector": queries[i % len(queries)].tolist()}
                try:
                    r = c.post("/v1/search", json=body)
                    self.answers.append((r.status_code, r.json().get("index_version", r.text)))
                except (httpx.HTTPError, ValueError) as exc:  # counted as a failed request
                    self.answers.append((0, repr(exc)))
                i += 1

    def close(self) -> list[tuple[int, str]]:
        self.stop.set()
        for t in self.threads:
            t.join(120)
        return self.answers


def top_ids(url: str, queries: np.ndarray) -> list[list[int]]:
    found = [
        httpx.post(f"{url}/v1/search", json={"vector": q.tolist(), "k": 10}, timeout=60).json()
        for q in queries
    ]
    return [[h["id"] for h in f["results"]] for f in found]


def one_node_ids(index: Path, version: str, queries: np.ndarray) -> list[list[int]]:
    """The same layout in one process: two shard groups, each re-ranking its own candidates,
    merged as the ingress merges them."""
    from echoseek.service.searcher import ShardGroup, merge_hits

    groups = [ShardGroup(index, g, 2) for g in range(2)]
    found = [
        merge_hits([g.search(version, q[None], 10, None, None) for g in groups], 10)[0]
        for q in queries
    ]
    return [[h["id"] for h in hits] for hits in found]


def main(out: Path) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=1, memory=3 << 30) for _ in range(3)]
    cluster.wait_for_nodes()
    index, queries = publish(out)
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    proc = start_service(cluster.address, out, index, port)
    try:
        wait_ready(url, proc, out)
        first = settled(url, view(url)["version"])
        local = one_node_ids(index, first["version"], queries)
        cluster_ids = top_ids(url, queries)

        load = Load(url, queries)
        time.sleep(3)
        ingress_nodes = {r["node_id"] for r in first["ingress"]}
        victim = next(
            n
            for n in nodes
            if n.node_id not in ingress_nodes
            and any(r["node_id"] == n.node_id for g in first["groups"] for r in g["replicas"])
        )
        cluster.remove_node(victim)
        time.sleep(8)
        add_vectors(index, np.full((50, DIM), 0.25, np.float32), ids=[f"w{i}" for i in range(50)])
        new = read_latest(index)
        start = time.perf_counter()
        swap = httpx.post(f"{url}/v1/admin/index", json={"version": new}, timeout=120)
        after = settled(url, new)
        reach_s = time.perf_counter() - start
        time.sleep(2)
        answers = load.close()
        return {
            "answers": answers,
            "swap_status": swap.status_code,
            "new": new,
            "first": first,
            "after": after,
            "removed": victim.node_id,
            "workers": [n.node_id for n in nodes],
            "reach_s": reach_s,
            "cluster_ids": cluster_ids,
            "local_ids": local,
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.shutdown()


if __name__ == "__main__":
    found = main(Path(sys.argv[1]))
    print(json.dumps(found, default=str))
