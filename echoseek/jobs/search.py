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
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.errors import ConfigError, EchoseekError, InputError
from echoseek.jobs.runner import run_job

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


def _rerank(text: str) -> str | bool | None:
    return {"": None, "true": True, "false": False}.get(text.lower(), text)


def run(cfg: Config) -> dict[str, Any]:
    """Send the query and return the service's answer."""
    import httpx

    token = cfg.token or os.environ.get(TOKEN_ENV, "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    options: dict[str, Any] = {
        "k": cfg.k,
        "nprobe": cfg.nprobe,
        "rerank": _rerank(cfg.rerank),
        "partial": cfg.partial,
    }
    try:
        with httpx.Client(base_url=cfg.url, headers=headers, timeout=cfg.timeout_s) as client:
            if cfg.image:
                data = _read(cfg.image)
                params = {
                    k: str(v).lower() if isinstance(v, bool) else v
                    for k, v in options.items()
                    if v is not None
                }
                files = {"file": (Path(cfg.image).name, data)}
                r = client.post("/v1/search/image", files=files, params=params)
            else:
                query = {"vector": _vector(cfg.vector)} if cfg.vector else {"id": cfg.item}
                r = client.post("/v1/search", json={**query, **options})
    except httpx.HTTPError as exc:
        raise EchoseekError(f"{cfg.url}: cannot reach the service ({exc})") from None
    if r.status_code != 200:
        raise EchoseekError(f"{cfg.url}: {r.status_code} {_message(r)}")
    return dict(r.json())


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _message(r: Any) -> str:
    try:
        return str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return r.text[:200]


def summarize(s: dict[str, Any]) -> str:
    """The top-K table, then where it came from."""
    cols = ("rank", "id", "item", "score", "label", "source", "frame_index")
    rows = [
        (
            str(i + 1),
            str(h["id"]),
            str(h.get("item") or ""),
            f"{h['score']:.4f}",
            _cell(h.get("label")),
            str(h.get("source") or ""),
            _cell(h.get("frame_index")),
        )
        for i, h in enumerate(s["results"])
    ]
    widths = [
        max(len(c), *(len(r[j]) for r in rows)) if rows else len(c) for j, c in enumerate(cols)
    ]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    note = f" PARTIAL: shards {s['missing_shards']} missing" if s.get("partial") else ""
    lines.append(
        f"index {s['index_version']}, model {s['model'] or '-'}, {s['took_ms']:.1f} ms{note}"
    )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek search") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
