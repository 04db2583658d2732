"""Run the search service in the foreground until Ctrl-C.

    echoseek serve index=work/demo/index dataset=work/demo/dataset
    echoseek serve serve/local.yaml                 # a Ray Serve config (as `serve run`)
    echoseek serve index=work/demo/index ray=false  # one process, no Ray (uvicorn)

The service answers the HTTP API (README.md, "The search service") on ``host:port``
(127.0.0.1:8000; any other address needs tokens), with the web page at ``/`` and the API
docs at ``/docs``. A Serve config file (``applications:``) is deployed as ``serve run``
deploys it (deployment options, replicas, autoscaling), its first application's ``args``
updated by the ``key=value`` overrides. ``for_s`` stops after that many seconds.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from echoseek.config import read_yaml
from echoseek.jobs.runner import run_job
from echoseek.service.config import ServiceConfig
from echoseek.service.run import start_service


@dataclass
class Config(ServiceConfig):
    """Options of ``echoseek serve``: the service's, plus how to run it."""

    ray: bool = True  # false: one process (uvicorn), no Ray
    for_s: float = 0.0  # stop after this many seconds; 0: until Ctrl-C
    serve_config: str = ""  # a Ray Serve config file (set by giving it as CONFIG)


def run(cfg: Config) -> dict[str, Any]:
    """Start the service, print where it answers, and wait."""
    running = start_service(cfg, use_ray=cfg.ray, serve_config=cfg.serve_config)
    if running.note:
        print(f"note: {running.note}", file=sys.stderr)
    print(
        f"serving index version {running.version} ({running.ntotal} vectors, "
        f"{running.ingress} ingress) at {running.url}"
    )
    print(f"  web page {running.url}/   API docs {running.url}/docs   (Ctrl-C stops)", flush=True)
    start = time.monotonic()
    try:
        while not cfg.for_s or time.monotonic() - start < cfg.for_s:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return {"url": running.url, "version": running.version, "seconds": time.monotonic() - start}


def summarize(s: dict[str, Any]) -> str:
    return f"stopped the service at {s['url']} after {s['seconds']:.0f} s"


def serve_config_args(path: str) -> list[str] | None:
    """``key=value`` words for a Ray Serve config file's first application (its ``args``, and
    ``http_options`` host/port), or None when ``path`` is not a Serve config."""
    data = read_yaml(path)
    if "applications" not in data:
        return None
    app = (data.get("applications") or [{}])[0]
    http = data.get("http_options") or {}
    words = [
        f"{k}={json.dumps(v)}"
        for k, v in (app.get("args") or {}).items()
        if not isinstance(v, dict)
    ]
    for section, values in (app.get("args") or {}).items():
        if isinstance(values, dict):
            words += [f"{section}.{k}={json.dumps(v)}" for k, v in values.items()]
    words += [f"{k}={json.dumps(http[k])}" for k in ("host", "port") if k in http]
    return [*words, f"serve_config={path}"]


def main(argv: Sequence[str] | None = None, prog: str = "echoseek serve") -> int:
    """Command-line entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if (
        args
        and "=" not in args[0]
        and not args[0].startswith("-")
        and args[0].endswith((".yaml", ".yml"))
    ):
        try:
            words = serve_config_args(args[0])
        except Exception:  # not readable: load_config reports it with the usual message
            words = None
        if words is not None:
            args = words + args[1:]
    return run_job(Config, run, args, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
