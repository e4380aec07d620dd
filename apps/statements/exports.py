"""A statement as a CSV file and as a JSON document. Credits are exact decimal strings."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from django.utils.text import slugify

from apps.statements.models import Statement, StatementLine

CSV_COLUMNS = [
    "period", "grant", "statement", "member", "key", "model",
    "requests", "prompt_tokens", "completion_tokens", "credits", "capped",
]  # fmt: skip


def credits_text(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _safe(text: str) -> str:
    """Names people typed can not become spreadsheet formulas."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def statement_filename(statement: Statement, extension: str) -> str:
    owner = statement.api_key.name if statement.api_key else ""
    owner = owner or (statement.user.get_username() if statement.user else "")
    parts = [statement.grant.identifier, statement.period, statement.kind, owner]
    return f"anvil-statement-{slugify('-'.join(p for p in parts if p))}.{extension}"


def _totals(row: Statement | StatementLine) -> dict:
    return {
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "credits": credits_text(row.credits),
        "capped": row.capped,
    }


def statement_csv(statement: Statement, lines: list[StatementLine]) -> str:
    head = [
        statement.period,
        statement.grant.identifier,
        statement.kind,
        statement.user.get_username() if statement.user else "",
        statement.api_key.name if statement.api_key else "",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row, label in [*((line, line.model_name) for line in lines), (statement, "total")]:
        writer.writerow([_safe(str(cell)) for cell in (*head, label, *_totals(row).values())])
    return out.getvalue()


def statement_document(statement: Statement, lines: list[StatementLine]) -> dict:
    key = statement.api_key
    return {
        "id": str(statement.public_id),
        "kind": statement.kind,
        "period": statement.period,
        "closed_at": statement.closed_at.isoformat(),
        "grant": {"id": str(statement.grant.public_id), "identifier": statement.grant.identifier},
        "member": statement.user.get_username() if statement.user else None,
        "key": {"name": key.name, "prefix": key.display_prefix} if key else None,
        "totals": _totals(statement),
        "by_model": [{"model": line.model_name, **_totals(line)} for line in lines],
    }
