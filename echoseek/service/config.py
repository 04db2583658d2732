"""What a search service deployment is configured with (``serve/*.yaml`` ``args``).

Everything that names a file or directory lives here, in the deploy config: an HTTP request
can only choose among what this config already allows (a version id under ``index``, an id in
the index's metadata), never a path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from echoseek.errors import ConfigError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Limits:
    """Bounds on what one request may ask for; a request past any of them is answered 4xx."""

    max_k: int = 1000
    max_batch: int = 64  # queries per /v1/search/batch
    max_body_bytes: int = 8 * 2**20
    max_image_pixels: int = 25_000_000  # width × height read from the header, before decoding

    def __post_init__(self) -> None:
        for name in ("max_k", "max_batch", "max_body_bytes", "max_image_pixels"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"limits.{name}: must be positive, got {getattr(self, name)}")


@dataclass
class ServiceConfig:
    """Options of the search service (``echoseek serve``, ``serve run serve/local.yaml``).

    Replicas, autoscaling and resources of each deployment are the Serve YAML's
    (``deployments:``); without one, every deployment runs one light replica.

    ``colocate``: no ``ShardSearcher`` deployments; each ``SearchIngress`` replica memory-maps
    every shard and searches them in its own threads, saving the hop to a searcher (one node,
    or storage every node mounts; scale with the ingress's replicas). ``shard_groups`` is then
    ignored.
    """

    index: str = ""  # an index root (versions + LATEST): a path, or an s3:// / gs:// URI
    version: str = "latest"  # the version served first: a version id under index, or latest
    model: str = ""  # query-image embedder: "" = the index's model_uri; dir, models:/, pixels
    pixel_size: int = 32  # for model=pixels
    dataset: str = ""  # dataset dir the thumbnails come from ("" = no thumbnails)
    host: str = "127.0.0.1"
    port: int = 8000
    tokens_file: str = ""  # lines "token:scope"; also ECHOSEEK_TOKENS="token:scope,..."
    cors_origins: list[str] = field(default_factory=list)  # empty: CORS off
    shard_groups: int = 0  # shard searcher deployments; 0: as few as replica_memory_mib allows
    replica_memory_mib: int = 8192  # memory budget of one searcher replica (service.placement)
    node_cache: str = ""  # node-local dir searchers copy their shards to ("": map them in place)
    colocate: bool = False  # search every shard inside each SearchIngress replica (no hop)
    batch_size: int = 16  # images per embedder call (@serve.batch)
    batch_wait_ms: float = 2.0
    shard_timeout_s: float = 10.0  # a shard call slower than this counts as failed
    tracking_uri: str = ""  # MLflow store for models:/ URIs
    feedback: str = ""  # the feedback log file; "" = <index>/feedback.jsonl
    ingress: str = "fast"  # HTTP ingress on Ray: fast (HAProxy) or proxy (echoseek.service.ingress)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port: must be in 1..65535, got {self.port}")
        for name in ("shard_groups",):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.replica_memory_mib <= 0:
            raise ConfigError(
                f"replica_memory_mib: must be positive, got {self.replica_memory_mib}"
            )
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size: must be positive, got {self.batch_size}")
        if self.ingress not in ("fast", "proxy"):
            raise ConfigError(f"ingress: must be 'fast' or 'proxy', got {self.ingress!r}")
        if self.batch_wait_ms < 0 or self.shard_timeout_s <= 0:
            raise ConfigError("batch_wait_ms must be >= 0 and shard_timeout_s positive")

    def check(self) -> None:
        """Fields every deployment needs (a config file may leave them to overrides)."""
        if not self.index:
            raise ConfigError("index is required (an index root from echoseek index build)")
        if "://" in self.index and not self.feedback:
            raise ConfigError(
                f"feedback: the index {self.index} is in an object store; name the feedback "
                "log's file on a filesystem every replica mounts (feedback=/path/feedback.jsonl)"
            )


def service_part(cfg: ServiceConfig) -> ServiceConfig:
    """The :class:`ServiceConfig` fields of ``cfg`` alone (``echoseek serve``'s config adds how
    to run the service, which a deployment's ``args`` do not take)."""
    if type(cfg) is ServiceConfig:
        return cfg
    return ServiceConfig(**{f.name: getattr(cfg, f.name) for f in fields(ServiceConfig)})


def is_local(host: str) -> bool:
    """True for loopback bind addresses (the only ones allowed without tokens)."""
    return host in LOCAL_HOSTS
