"""The Serve application: ``serve run echoseek.service.app:build index=work/index``.

:func:`build` is a Serve application builder: ``serve/*.yaml`` name it as ``import_path``
and pass :class:`~echoseek.service.config.ServiceConfig` fields as ``args``. It composes one
``ShardSearcher<g>`` deployment per shard group (none with ``colocate``: the ingress
searches the shards itself), the ``Embedder`` (when the index or config names a model) and
the ``SearchIngress``, each overridable by name in the YAML's
``deployments:`` (replicas, autoscaling, GPUs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

from ray.serve import Application, Deployment

from echoseek.config import from_dict
from echoseek.model_ref import ModelRef
from echoseek.service.auth import check_bind, load_tokens
from echoseek.service.backend import model_spec, model_tracking
from echoseek.service.config import ServiceConfig, service_part
from echoseek.service.deployments import Embedder, SearchIngress, ShardSearcher
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
    served = load_served(cfg.index, cfg.version)  # refuse a corrupt first version here
    cfg = dataclasses.replace(cfg, version=served.version)  # every deployment starts on it
    groups = 0 if cfg.colocate else cfg.shard_groups or served.shard_count
    searcher, embedding, ingress = (
        cast(Deployment, d) for d in (ShardSearcher, Embedder, SearchIngress)
    )
    searchers = [
        searcher.options(name=f"ShardSearcher{g}").bind(cfg.index, g, groups, served.version)
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


def local_absolute(path: str) -> str:
    """A local path made absolute (replicas may run elsewhere); "" stays ""."""
    return str(Path(path).resolve()) if path else ""


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
        tokens_file=local_absolute(cfg.tokens_file),
        model=model_absolute(cfg.model),
    )
