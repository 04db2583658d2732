"""The report as a list of blocks, rendered to Markdown and to standalone HTML.

A block is one of ``("h1" | "h2" | "p", text)``, ``("table", header, rows)`` or
``("figure", file, caption)``; figure files are relative to the report directory, so both
renderings open from it (and Chromium prints the HTML with its images).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

Block = tuple[Any, ...]

STYLE = """
body { font-family: "DejaVu Sans", "Noto Sans CJK JP", "IPAGothic", sans-serif;
       margin: 2em auto; max-width: 52em; color: #222; font-size: 11pt; }
h1 { font-size: 20pt; border-bottom: 2px solid #444; }
h2 { font-size: 14pt; margin-top: 1.4em; page-break-after: avoid; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 9.5pt; }
th, td { border: 1px solid #bbb; padding: 2px 8px; text-align: left; }
th { background: #eee; }
figure { margin: 1em 0; page-break-inside: avoid; }
figure img { max-width: 100%; }
figcaption { font-size: 9pt; color: #555; }
"""


def cell(value: Any) -> str:
    """A table cell's text: floats to 4 decimals, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown of ``blocks`` (pipes in cells escaped)."""
    out: list[str] = []
    for kind, *rest in blocks:
        if kind == "h1":
            out.append(f"# {rest[0]}")
        elif kind == "h2":
            out.append(f"## {rest[0]}")
        elif kind == "p":
            out.append(str(rest[0]))
        elif kind == "table":
            header, rows = rest
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
        elif kind == "figure":
            out.append(f"![{rest[1]}]({rest[0]})")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
        out.append("")
    return "\n".join(out)


def standalone_html(title: str, blocks: Sequence[Block]) -> str:
    """One self-contained UTF-8 HTML page (inline CSS; figures by relative path)."""
    body: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{html.escape(str(rest[0]))}</{kind}>")
        elif kind == "table":
            header, rows = rest
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            lines = "".join(
                "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
                for row in rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>")
        elif kind == "figure":
            src, caption = (html.escape(str(x), quote=True) for x in rest)
            body.append(
                f'<figure><img src="{src}" alt="{caption}"><figcaption>{caption}'
                "</figcaption></figure>"
            )
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return (
        '<!doctype html>\n<html lang="ja">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _md_cell(value: Any) -> str:
    return cell(value).replace("|", "\\|").replace("\n", " ")
