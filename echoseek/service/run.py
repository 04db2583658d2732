"""Start the search service and wait until it answers: on Ray Serve, or in this process.

:func:`start_service` is what ``echoseek serve`` and the demo call; it returns a
:class:`Running` service (its URL and a ``stop``) once ``/readyz`` answers 200. A service that
cannot start fails as soon as the cause is known, with one line naming it: a Serve deployment
whose replicas keep failing in their constructor (Serve marks it ``DEPLOY_FAILED`` after a few
tries and would retry forever), or an in-process HTTP server that stopped.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from echoseek.config import read_yaml
from echoseek.errors import EchoseekError
from echoseek.ray_session import ensure_ray, quiet_serve
from echoseek.service.app import absolute_paths, compose
from echoseek.service.auth import check_bind, load_tokens
from echoseek.service.backend import LocalBackend
from echoseek.service.board import remove_board
from echoseek.service.config import ServiceConfig
from echoseek.service.http import create_app
from echoseek.service.ingress import LABELS, prepare_ingress
from echoseek.service.placement import placement_note, spread_nodes

FailureProbe = Callable[[], str | None]  # the reason the service cannot start, or None
APP_NAME = "echoseek"
READY_TIMEOUT_S = 300.0


@dataclass
class Running:
    """A started service: where it answers and how to stop it."""

    url: str
    stop: Callable[[], None]
    version: str
    ntotal: int
    ingress: str = "uvicorn"  # what answers HTTP: HAProxy, Serve proxy or uvicorn
    note: str = ""  # why the ingress is not the one asked for ("" when it is)


def start_service(cfg: ServiceConfig, use_ray: bool = True, serve_config: str = "") -> Running:
    """Start the service for ``cfg`` and return once it is ready.

    ``serve_config``: a Ray Serve config file deployed as ``serve run`` deploys it (its
    deployment options, replicas and autoscaling included), with ``cfg`` as the first
    application's ``args``.
    """
    cfg.check()
    tokens = load_tokens(cfg.tokens_file)
    check_bind(cfg.host, tokens)
    check_port(cfg.host, cfg.port)
    failed: FailureProbe = serve_failure
    ingress, note = "uvicorn", ""
    if use_ray:
        quiet_serve()
        kind, note = prepare_ingress(cfg.ingress, joining=ray_running())
        ingress = LABELS[kind]
        ensure_ray()
        note = "; ".join(n for n in (note, placement_note(spread_nodes(), not cfg.colocate)) if n)
        if serve_config:
            url, stop = _deploy_config(cfg, serve_config)
        else:
            url, stop = _start_serve(cfg)
    else:  # a Serve config's deployments need Ray; its args are in cfg already
        url, stop, failed = _start_uvicorn(cfg)
    try:
        doc = wait_ready(url, tokens_header(tokens), failed)
    except BaseException:
        stop()
        raise
    return Running(url, stop, doc["version"], int(doc["ntotal"]), ingress, note)


def ray_running() -> bool:
    """Whether this process is in a Ray session or will join a cluster (``RAY_ADDRESS``)."""
    import ray

    return ray.is_initialized() or bool(os.environ.get("RAY_ADDRESS"))


def check_port(host: str, port: int) -> None:
    """Refuse a port another process already listens on (before anything starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise EchoseekError(f"port: cannot listen on {host}:{port} ({exc.strerror})") from None


def url_of(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def tokens_header(tokens: Any) -> dict[str, str]:
    """An Authorization header with one of the configured tokens (for the readiness probe
    that reads ``/v1/index``); empty when auth is off."""
    if not tokens.enabled:
        return {}
    return {"Authorization": "Bearer " + tokens.entries[0][0].decode()}


def wait_ready(
    url: str,
    headers: dict[str, str],
    failed: FailureProbe = lambda: None,
    timeout_s: float = READY_TIMEOUT_S,
) -> Any:
    """Poll ``/readyz`` until it answers 200; then the ``/v1/index`` document. Raises as soon
    as ``failed()`` names a reason the service cannot start."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return httpx.get(f"{url}/v1/index", headers=headers, timeout=10).json()
        except httpx.HTTPError:
            pass
        reason = failed()
        if reason:
            raise EchoseekError(f"the service cannot start: {reason}")
        if time.monotonic() > deadline:
            raise EchoseekError(f"the service at {url} did not become ready in {timeout_s:.0f} s")
        time.sleep(0.25)


def serve_failure() -> str | None:
    """``deployment: error`` for the first deployment Serve marked ``DEPLOY_FAILED`` (its
    replicas failed to start several times in a row), the error being the last line of the
    replica's traceback, or ``application NAME: error`` for an application whose build
    failed (a Serve config naming a deployment the app does not have); None while every
    deployment is starting or running."""
    from ray import serve

    try:
        status = serve.status()
    except Exception:  # no controller yet
        return None
    for app_name, app in status.applications.items():
        if str(app.status).endswith("DEPLOY_FAILED") and not app.deployments:
            return f"application {app_name}: {_last_line(app.message)}"  # its build failed
        for name, deployment in app.deployments.items():
            if str(deployment.status).endswith("DEPLOY_FAILED"):
                return f"{name}: {_last_line(deployment.message)}"
    return None


def _last_line(message: str) -> str:
    """The last line of a traceback, its exception's module dropped:
    ``echoseek.errors.InputError: x`` -> ``InputError: x``."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return re.sub(r"^(?:\w+\.)+(\w+: )", r"\1", lines[-1]) if lines else "failed"


def _start_serve(cfg: ServiceConfig) -> tuple[str, Callable[[], None]]:
    from ray import serve

    ensure_ray()
    app = compose(cfg)  # a bad index or config fails here, before Serve starts
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    try:  # serve.run waits for the deployments; Serve's own error names no cause
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as exc:
        reason = serve_failure() or _first_line(exc)  # read before Serve goes
        stop_serve()
        raise EchoseekError(f"the service cannot start: {reason}") from None
    return url_of(cfg.host, cfg.port), stopper(cfg)


def stopper(cfg: ServiceConfig) -> Callable[[], None]:
    """Stop Serve, then remove the service's board (:mod:`echoseek.service.board`)."""

    def stop() -> None:
        stop_serve()
        remove_board(absolute_paths(cfg).index)

    return stop


def stop_serve(timeout_s: float = 30.0) -> None:
    """``serve.shutdown()`` without Ray's ``(raylet) Task ServeController.graceful_shutdown
    failed`` line on the terminal.

    ``serve.shutdown`` waits on a ``graceful_shutdown`` call that only ends when the
    controller kills itself, so the call fails, and the controller's infinite task retries make
    the driver print that warning. Here the controller is told to shut down without waiting
    (``wait=False`` returns at once), the driver polls until its named actor is gone, and then
    ``serve.shutdown()`` finds nothing left to stop.
    """
    import ray
    from ray import serve
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        ray.get(controller.graceful_shutdown.remote(wait=False), timeout=timeout_s)
    except (ValueError, ray.exceptions.RayError):
        pass  # no controller, or it is already going: serve.shutdown() below copes
    else:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
            except ValueError:
                break
            time.sleep(0.1)
    serve.shutdown()


def serve_schema(cfg: ServiceConfig, path: str) -> Any:
    """The ``ServeDeploySchema`` of a Serve config file with ``cfg`` (local paths made
    absolute: replicas may run in another directory) as its first application's ``args``."""
    from ray.serve.schema import ServeDeploySchema

    data = read_yaml(path)
    args = dataclasses.asdict(absolute_paths(cfg))
    try:
        data["applications"][0]["args"] = args
        data["http_options"] = {
            **(data.get("http_options") or {}),
            "host": cfg.host,
            "port": cfg.port,
        }
        return ServeDeploySchema.model_validate(data)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise EchoseekError(f"{path}: not a valid Ray Serve config ({_first_line(exc)})") from None


def deploy(schema: Any) -> None:
    """Deploy (or update in place: a changed ``user_config`` only reconfigures) ``schema``."""
    from ray.serve._private import api as serve_api

    ensure_ray()
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location
    )
    client.deploy_apps(schema, _blocking=False)


def _deploy_config(cfg: ServiceConfig, path: str) -> tuple[str, Callable[[], None]]:
    """Deploy a Serve config file's applications, the first with ``cfg`` as its args."""
    schema = serve_schema(cfg, path)
    ensure_ray()
    compose(cfg)  # a bad index or config fails here, not in a replica
    deploy(schema)
    return url_of(cfg.host, cfg.port), stopper(cfg)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _start_uvicorn(cfg: ServiceConfig) -> tuple[str, Callable[[], None], FailureProbe]:
    backend = LocalBackend(cfg, groups=cfg.shard_groups or 1)
    app = create_app(backend, load_tokens(cfg.tokens_file))
    server = uvicorn.Server(
        uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="echoseek-http", daemon=True)
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    def failed() -> str | None:
        return None if thread.is_alive() else "the HTTP server stopped (see the lines above)"

    return url_of(cfg.host, cfg.port), stop, failed
