"""The Serve application: ``serve run echoseek.service.app:build index=work/index``.

:func:`build` is a Serve application builder: ``serve/*.yaml`` name it as ``import_path``
and pass :class:`~echoseek.service.config.ServiceConfig` fields as ``args``. It composes one
``ShardSearcher<g>`` deployment per shard group (as many as :mod:`echoseek.service.placement`
sizes by memory, each replica asking for its memory, one per node on a cluster; none with
``colocate``: the ingress searches the shards itself), the ``Embedder`` (when the index or
config names a model) and the ``SearchIngress``, each overridable by name in the YAML's
``deployments:`` (replicas, autoscaling, GPUs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

from ray.serve import Application, Deployment

from echoseek.config import from_dict
from echoseek.model_ref import ModelRef
from echoseek.object_store import is_uri
from echoseek.service.auth import check_bind, load_tokens
from echoseek.service.backend import model_spec, model_tracking
from echoseek.service.board import board
from echoseek.service.config import ServiceConfig, service_part
from echoseek.service.deployments import Embedder, SearchIngress, ShardSearcher
from echoseek.service.placement import auto_groups, searcher_options, spread_nodes
from echoseek.service.versions import load_served


def build(args: dict[str, Any]) -> Application:
    """The application for ``args`` (ServiceConfig fields; ConfigError names a bad one)."""
    cfg = args if isinstance(args, ServiceConfig) else from_dict(ServiceConfig, dict(args))
    return compose(cfg)


def compose(cfg: ServiceConfig) -> Application:
    """The application for ``cfg``: its first version is checked here (the caller's process)."""
    cfg = absolute_paths(cfg)
    cfg.check()
    check_bind(cfg.host, load_tokens(cfg.tokens_file))
    # refuse a corrupt first version here (with node copies, each searcher checks its own)
    served = load_served(cfg.index, cfg.version, verify=not (cfg.node_cache or is_uri(cfg.index)))
    cfg = dataclasses.replace(cfg, version=served.version)  # every deployment starts on it
    reset_board(cfg.index, served.version)
    groups = 0 if cfg.colocate else shard_groups(cfg, served.manifest)
    searcher, embedding, ingress = (
        cast(Deployment, d) for d in (ShardSearcher, Embedder, SearchIngress)
    )
    nodes = spread_nodes()
    searchers = [
        searcher.options(**searcher_options(served.manifest, g, groups, nodes)).bind(
            cfg.index, g, groups, served.version, cfg.node_cache
        )
        for g in range(groups)
    ]  # none when colocated: the ingress searches the shards itself
    spec = model_absolute(model_spec(cfg, served))
    embedder = (
        embedding.bind(
            spec,
            cfg.pixel_size,
            model_tracking(cfg, served),
            served.dim,
            cfg.batch_size,
            cfg.batch_wait_ms,
        )
        if spec
        else None
    )
    return ingress.bind(dataclasses.asdict(cfg), embedder, searchers, spec)


def reset_board(index: str, version: str) -> None:
    """A new deployment of the service starts its board afresh on ``version`` (a board left
    by an earlier deployment over the same root would point its replicas elsewhere)."""
    import ray

    if ray.is_initialized():
        ray.get(board(index).reset.remote(version))


def shard_groups(cfg: ServiceConfig, manifest: dict[str, Any]) -> int:
    """``cfg.shard_groups``, or (0) the fewest that fit ``cfg.replica_memory_mib``."""
    return cfg.shard_groups or auto_groups(manifest, cfg.replica_memory_mib << 20)


def local_absolute(path: str) -> str:
    """A local path made absolute (replicas may run elsewhere); "" and URIs stay as they are."""
    return str(Path(path).resolve()) if path and not is_uri(path) else path


def model_absolute(model: str) -> str:
    """A model reference with a local directory made absolute; "" (the index's) stays ""."""
    return ModelRef.parse(model).absolute().uri if model else ""


def absolute_paths(cfg: ServiceConfig) -> ServiceConfig:
    """The service fields of ``cfg`` with its local paths (index, dataset, tokens file, model)
    made absolute."""
    return dataclasses.replace(
        service_part(cfg),
        index=local_absolute(cfg.index),
        dataset=local_absolute(cfg.dataset),
        node_cache=local_absolute(cfg.node_cache),
        feedback=local_absolute(cfg.feedback),
        tokens_file=local_absolute(cfg.tokens_file),
        model=model_absolute(cfg.model),
    )
