from __future__ import annotations

from decimal import Decimal

from django import template

from apps.core.formats import format_credits_for_people
from apps.core.tables import cell_text

register = template.Library()


@register.simple_tag(takes_context=True)
def csv_url(context, table) -> str:
    """This page's URL asking for ``table`` as CSV, keeping the page's other query parameters
    (the period shown), so the download holds exactly the rows on screen."""
    query = context["request"].GET.copy()
    query["format"] = "csv"
    query["table"] = table.name
    return f"?{query.urlencode()}"


@register.filter
def credits(value) -> str:
    """Credits exactly as the tables and CSV files write them: 12.500000 → "12.5"."""
    return cell_text(value)


@register.filter
def people_credits(value) -> str:
    """Credits for reading on a page: "1,234.57" (``format_credits_for_people``)."""
    if value is None or value == "":
        return ""
    return format_credits_for_people(Decimal(value))
