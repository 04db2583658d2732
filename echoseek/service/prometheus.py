"""Prometheus metrics of one ingress replica: requests and latency per route, per shard group.

Each replica keeps its own registry (scrape every replica, as with any Serve deployment);
``/metrics`` answers it in the Prometheus text format.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """Counters and histograms, labelled by route template (never by raw path) and status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "echoseek_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "echoseek_request_seconds",
            "HTTP request latency, by route",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.shard_latency = Histogram(
            "echoseek_shard_seconds",
            "Latency of one shard group's search call, by group",
            ["group"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.shard_failures = Counter(
            "echoseek_shard_failures",
            "Shard group calls that failed (retried or reported missing), by group",
            ["group"],
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
