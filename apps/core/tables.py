"""A table is built once and then shown three ways — an HTML table, a chart and a CSV file —
from the same cell texts, so a chart, its table and the download never disagree.

Credits are written exactly (``Decimal`` as a plain decimal string, no rounding, no exponent).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from decimal import Decimal

from django.http import Http404, HttpResponse
from django.utils import timezone
from django.utils.text import slugify

from apps.core.formats import format_credits


def cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format_credits(value)
    if isinstance(value, dt.datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def grouped(text: str) -> str:
    """A number cell as the page shows it: thousands separated, every digit kept
    (1234567.5 → "1,234,567.5"); the CSV keeps the plain text. Words pass unchanged."""
    whole, dot, fraction = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    digits = whole.removeprefix("-")
    if not digits.isdigit():
        return text
    return f"{sign}{int(digits):,}{dot}{fraction}"


def _nonzero(text: str) -> bool:
    try:
        return Decimal(text) != 0
    except ArithmeticError:  # "no limit" and other words
        return False


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool = False
    empty: str = ""  # what an empty cell says, e.g. "no limit" (in the page and the CSV)


@dataclass(frozen=True)
class Chart:
    """Which columns a chart draws: labels from one column, one data set per value column."""

    kind: str  # "bar" or "line"
    label_column: int
    value_columns: tuple[int, ...]


@dataclass
class Table:
    name: str  # unique on its page; the ?table= of its CSV download
    title: str
    columns: list[Column]
    rows: list[list[str]] = field(default_factory=list)
    chart: Chart | None = None
    empty_message: str = "Nothing yet."
    row_ids: list[str] = field(default_factory=list)  # optional data-row attribute per row
    # Optional links per row (e.g. "Change limit"), shown in the page only, never in the CSV.
    row_actions: list[list[dict]] = field(default_factory=list)
    actions_title: str = ""
    # The chart's whole axis (e.g. every day of the month), when it is longer than the rows:
    # labels without a row are drawn as gaps. And what the page says instead of a chart when
    # there is nothing to draw (no rows, or only zeros).
    chart_labels: list[str] | None = None
    chart_empty_message: str = "Nothing to draw yet."

    def add(self, *values, row_id: str = "", actions: list[dict] | None = None) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{self.name}: {len(values)} values for {len(self.columns)} columns")
        texts = [cell_text(value) for value in values]
        self.rows.append(
            [text or column.empty for text, column in zip(texts, self.columns, strict=True)]
        )
        self.row_ids.append(row_id)
        self.row_actions.append(actions or [])

    @property
    def width(self) -> int:
        return len(self.columns) + (1 if self.actions_title else 0)

    @property
    def html_rows(self) -> list[dict]:
        """Rows for the template: each cell's text and whether it is a number."""
        return [
            {
                "id": row_id,
                "cells": [
                    {"text": grouped(text) if column.numeric else text, "numeric": column.numeric}
                    for column, text in zip(self.columns, row, strict=True)
                ],
                "actions": actions,
            }
            for row, row_id, actions in zip(self.rows, self.row_ids, self.row_actions, strict=True)
        ]

    @property
    def chart_data(self) -> dict | None:
        """What static/js/charts.js draws: labels and data sets as exact decimal strings."""
        if self.chart is None or not self._has_something_to_draw():
            return None
        by_label = {row[self.chart.label_column]: row for row in self.rows}
        labels = self.chart_labels or list(by_label)
        return {
            "kind": self.chart.kind,
            "labels": labels,
            "datasets": [
                {
                    "label": self.columns[index].title,
                    "data": [
                        (by_label[label][index] or "0") if label in by_label else None
                        for label in labels
                    ],
                }
                for index in self.chart.value_columns
            ],
        }

    def _has_something_to_draw(self) -> bool:
        return any(_nonzero(row[index]) for row in self.rows for index in self.chart.value_columns)

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([column.title for column in self.columns])
        writer.writerows(self.rows)
        return out.getvalue()


def csv_response(table: Table, *, filename: str) -> HttpResponse:
    response = HttpResponse(table.csv_text(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slugify(filename)}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


def wants_csv(request) -> bool:
    return request.GET.get("format") == "csv"


def table_csv_response(request, tables: list[Table], *, prefix: str) -> HttpResponse | None:
    """The CSV of the table named by ``?table=`` when ``?format=csv`` asks for one; None when
    the page itself is wanted. An unknown table name is a 404."""
    if not wants_csv(request):
        return None
    name = request.GET.get("table", "")
    table = next((table for table in tables if table.name == name), None)
    if table is None:
        raise Http404("No such table on this page.")
    return csv_response(table, filename=f"{prefix}-{table.name}")
