"""`echoseek index build` from and to an object store against the same build on a filesystem.

    .venv/bin/python bench/bench_object_store.py --sizes 300000 1000000   # ~6 min here

An S3-compatible server (moto's standalone server, from the dev extras) runs on 127.0.0.1 for
the length of the run; the commands reach it as users reach theirs, through
``AWS_ENDPOINT_URL`` and keys in their environment. For each N, the vectors artifact of
bench_build_scale.py (N × ``--dim`` clustered points with ids) is uploaded once (timed), then
the real command runs in its own process, twice, back to back on the same machine:

    echoseek index build --json input=<dir>        output=<dir>
    echoseek index build --json input=s3://b/vecs  output=s3://b/index

and the table gives each stage's seconds for both, the ratio of the totals, and whether the
two versions' shard files are the same bytes (their SHA-256 in the manifests). What the store
adds is the tasks' uploads and downloads through pyarrow.fs and the server's own work: moto
keeps objects in the memory of one Python process, so this measures the echoseek side with
a slow server, not a cloud store's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_build_scale import table, vectors_artifact

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's S3 server
from tests.object_store_server import start_server

STAGES = ("check_s", "sample_s", "train_s", "fill_s", "calibrate_s")


def upload(local: Path, uri: str) -> float:
    """Upload a vectors artifact (its parts, then its descriptor); seconds taken."""
    from echoseek import object_store as store

    start = time.perf_counter()
    files = sorted(p for p in local.iterdir() if p.is_file())
    for path in sorted(files, key=lambda p: p.name == "vectors.json"):
        store.upload(path, store.join(uri, path.name))
    return time.perf_counter() - start


def build(source: str, root: str, cpus: int) -> dict[str, Any]:
    """The real command in its own process (its JSON summary), and its manifest."""
    from echoseek.index.manifest import read_manifest
    from echoseek.object_store import join

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    exe = str(Path(sys.executable).parent / "echoseek")
    args = [exe, "index", "build", "--json", f"input={source}", f"output={root}",
            "build.retention=1", f"build.train_cpus={cpus}"]  # fmt: skip
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    summary = json.loads(out[out.index("{") :])
    return {**summary, "manifest": read_manifest(join(root, summary["version"]))}


def row(n: int, where: str, s: dict[str, Any], upload_s: float) -> dict[str, Any]:
    stages = {k: round(s.get(k, 0.0), 1) for k in STAGES}
    return {
        "n": n, "where": where, **stages,
        "publish_s": round(s["seconds"] - sum(s.get(k, 0.0) for k in STAGES), 1),
        "build_s": round(s["seconds"], 1), "upload_s": round(upload_s, 1),
        "driver_peak_mib": round(s["driver_peak_rss_mib"]),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--work", type=Path, default=Path("work/bench-build-scale"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    server = start_server()
    rows = []
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket="bench")
        for n in args.sizes:
            vectors = vectors_artifact(args.work / f"vectors-{n}", n, args.dim)
            sent = upload(vectors, f"s3://bench/vectors-{n}")
            local = build(str(vectors), str(args.work / f"index-store-{n}"), args.cpus)
            remote = build(f"s3://bench/vectors-{n}", f"s3://bench/index-{n}", args.cpus)
            same = [s["sha256"] for s in local["manifest"]["shards"]] == [
                s["sha256"] for s in remote["manifest"]["shards"]
            ]
            pair = [row(n, "filesystem", local, 0.0), row(n, "s3 (moto)", remote, sent)]
            pair[1]["ratio"] = round(pair[1]["build_s"] / pair[0]["build_s"], 2)
            pair[1]["same_files"] = same
            rows += pair
            for r in pair:
                print(json.dumps(r), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(table(list(rows[1]), rows))


if __name__ == "__main__":
    main()
