"""The report's Markdown and HTML renderings of the same blocks."""

from __future__ import annotations

import html.parser

import pytest

from echoseek.report.document import markdown, standalone_html

BLOCKS = [
    ("h1", "レポート <1>"),
    ("p", "a & b"),
    ("table", ["name", "value"], [["a|b", 0.123456], ["none", None]]),
    ("figure", "grid.png", 'top "K"'),
]


def test_markdown_tables_escape_pipes_and_round_floats() -> None:
    text = markdown(BLOCKS)
    assert text.startswith("# レポート <1>\n")
    assert "| a\\|b | 0.1235 |" in text and "| none |  |" in text
    assert '![top "K"](grid.png)' in text


def test_html_is_escaped_well_formed_utf8() -> None:
    page = standalone_html("タイトル", BLOCKS)
    assert '<meta charset="utf-8">' in page and "<title>タイトル</title>" in page
    assert "<h1>レポート &lt;1&gt;</h1>" in page and "<p>a &amp; b</p>" in page
    assert '<img src="grid.png" alt="top &quot;K&quot;">' in page
    assert "<td>0.1235</td>" in page

    class Tags(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag not in ("meta", "img", "br"):
                self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open.pop() == tag

    parser = Tags()
    parser.feed(page)
    assert parser.open == []


def test_an_unknown_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown block"):
        markdown([("h7", "x")])
    with pytest.raises(ValueError, match="unknown block"):
        standalone_html("t", [("h7", "x")])
