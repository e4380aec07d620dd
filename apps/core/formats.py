"""How numbers are written for people, the same on every page, message and download."""

from __future__ import annotations

from decimal import Decimal


def format_credits(value: Decimal) -> str:
    """0.420000 → "0.42", 100.000000 → "100": credits exactly, without trailing zeros."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
