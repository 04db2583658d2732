"""Query a running search service from the command line and print the top-K table.

    echoseek search image=query.png
    echoseek search vector=query.npy k=20 rerank=soart3_gamma
    echoseek search item=12 url=http://10.0.0.5:8000 token=...   # or $ECHOSEEK_TOKEN

``image`` is a PNG or JPEG file (sent as ``/v1/search/image``), ``vector`` a ``.npy`` file
(1-D, or the first row of a 2-D array), ``item`` a stored item's id ("more like this").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from echoseek.errors import ConfigError, InputError
from echoseek.jobs.runner import run_job
from echoseek.service.client import search_image, search_json, top_k_table

TOKEN_ENV = "ECHOSEEK_TOKEN"


@dataclass
class Config:
    """Options of ``echoseek search``."""

    url: str = "http://127.0.0.1:8000"
    image: str = ""  # a PNG/JPEG query image
    vector: str = ""  # a .npy query vector
    item: int | None = None  # a stored item's id
    k: int = 10
    nprobe: int | None = None
    rerank: str = ""  # a distance name, true, false; "": the index's default
    partial: bool = False
    token: str = ""  # default: $ECHOSEEK_TOKEN
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if sum(bool(x) for x in (self.image, self.vector, self.item is not None)) != 1:
            raise ConfigError("give exactly one of image=PATH, vector=PATH.npy or item=ID")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"url: expected http:// or https://, got {self.url!r}")


def _vector(path: str) -> list[float]:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({exc})") from None
    row = array if array.ndim == 1 else array.reshape(len(array), -1)[0]
    return [float(x) for x in row]


def run(cfg: Config) -> dict[str, Any]:
    """Send the query and return the service's answer."""
    token = cfg.token or os.environ.get(TOKEN_ENV, "")
    rerank = {"": None, "true": True, "false": False}.get(cfg.rerank.lower(), cfg.rerank)
    options = {"k": cfg.k, "nprobe": cfg.nprobe, "rerank": rerank, "partial": cfg.partial}
    if cfg.image:
        return search_image(cfg.url, cfg.image, options, token, cfg.timeout_s)
    query = {"vector": _vector(cfg.vector)} if cfg.vector else {"id": cfg.item}
    return search_json(cfg.url, query, options, token, cfg.timeout_s)


def summarize(s: dict[str, Any]) -> str:
    """The top-K table, then where it came from."""
    return top_k_table(s)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek search") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
