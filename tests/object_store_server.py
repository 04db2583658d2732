"""A real S3-compatible server for the object-store tests: moto's standalone server on
127.0.0.1, started once per session by the first test that asks for a bucket.

Every process of the session (this one, the local Ray workers it starts, the job scripts it
runs) reaches it the way users reach their store: through the AWS environment variables, set
here at import, before Ray starts, so Ray's workers inherit them. Nothing contacts the port
until a test asks for ``bucket``.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768+) and above Ray's worker ports
    (10002-19999): the server starts later than this, and the gRPC servers of the Ray the
    session starts in between take ephemeral ports (one took a port picked with ``bind(0)``)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(21000, 29000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 21000-28999 for the S3 test server")


PORT = free_port()
ENDPOINT = f"http://127.0.0.1:{PORT}"
for key, value in {
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_ACCESS_KEY_ID": "echoseek-test",
    "AWS_SECRET_ACCESS_KEY": "echoseek-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-role lookup at an address that is absent
}.items():
    os.environ.setdefault(key, value)


def start_server(port: int = PORT) -> subprocess.Popen[bytes]:
    """moto's server on 127.0.0.1:``port``, once it accepts connections (also
    bench/bench_object_store.py's server)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start on port {port}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The server's endpoint URL while the session lasts."""
    proc = start_server()
    yield os.environ["AWS_ENDPOINT_URL"]
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def bucket(s3_server: str) -> str:
    """A new, empty bucket: ``s3://<name>``."""
    import boto3

    name = f"echoseek-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"
