"""Read a page's table, its chart and its CSV download back as rows of text."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser


class _TableParser(HTMLParser):
    def __init__(self, testid: str) -> None:
        super().__init__()
        self.testid, self.depth, self.rows, self.cell = testid, 0, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("data-testid") == self.testid:
            self.depth = 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in {"td", "th"}:
            self.cell = ""

    def handle_endtag(self, tag):
        if self.depth and tag in {"td", "th"} and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None
        elif tag == "table" and self.depth:
            self.depth = 0

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def html_table(content: bytes | str, name: str) -> list[list[str]]:
    """The header and rows of the table ``table-<name>`` as the page shows them."""
    parser = _TableParser(f"table-{name}")
    parser.feed(content.decode() if isinstance(content, bytes) else content)
    return parser.rows


def csv_rows(content: bytes | str) -> list[list[str]]:
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    return list(csv.reader(io.StringIO(text)))


def chart_data(content: bytes | str, name: str) -> dict:
    """The numbers the chart of table ``name`` draws (its json_script element)."""
    text = content.decode() if isinstance(content, bytes) else content
    marker = f'<script id="chart-data-{name}" type="application/json">'
    return json.loads(text.split(marker, 1)[1].split("</script>", 1)[0])
