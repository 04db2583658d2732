"""A small HTTP client of the search service, and the top-K table it prints.

Used by ``echoseek search`` and the demo; any error (unreachable service, a 4xx/5xx answer)
is an :class:`~echoseek.errors.EchoseekError` naming the URL and the service's message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from echoseek.errors import EchoseekError, InputError


def search_image(
    url: str, path: str, options: dict[str, Any], token: str = "", timeout_s: float = 60.0
) -> dict[str, Any]:
    """POST an image file to ``/v1/search/image`` (``options``: k, nprobe, rerank, partial)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    params = {
        k: str(v).lower() if isinstance(v, bool) else v for k, v in options.items() if v is not None
    }
    files = {"file": (Path(path).name, data)}
    return _post(url, "/v1/search/image", token, timeout_s, files=files, params=params)


def search_json(
    url: str,
    query: dict[str, Any],
    options: dict[str, Any],
    token: str = "",
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """POST ``{vector | id | image, **options}`` to ``/v1/search``."""
    return _post(url, "/v1/search", token, timeout_s, json={**query, **options})


def get_text(url: str, route: str, token: str = "", timeout_s: float = 60.0) -> str:
    """The body of ``GET route`` (e.g. the feedback export's CSV)."""
    return _request("GET", url, route, token, timeout_s).text


def _post(url: str, route: str, token: str, timeout_s: float, **request: Any) -> dict[str, Any]:
    return dict(_request("POST", url, route, token, timeout_s, **request).json())


def _request(
    method: str, url: str, route: str, token: str, timeout_s: float, **request: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=timeout_s) as client:
            r = client.request(method, route, **request)
    except httpx.HTTPError as exc:
        raise EchoseekError(f"{url}: cannot reach the service ({exc})") from None
    if r.status_code != 200:
        raise EchoseekError(f"{url}: {r.status_code} {_message(r)}")
    return r


def _message(r: Any) -> str:
    try:
        return str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(r.text[:200])


def top_k_table(answer: dict[str, Any]) -> str:
    """The hits as an aligned table (rank, id, item, score, label, source, frame_index), then
    the version and model they came from."""
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
        for i, h in enumerate(answer["results"])
    ]
    widths = [max([len(c)] + [len(r[j]) for r in rows]) for j, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    missing = answer.get("missing_shards")
    note = f"; PARTIAL: shards {missing} missing" if answer.get("partial") else ""
    lines.append(
        f"index {answer['index_version']}, model {answer['model'] or '-'}, "
        f"{answer['took_ms']:.1f} ms{note}"
    )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)
