"""How numbers are written for people, the same on every page, message and download."""

from __future__ import annotations

from decimal import Decimal


def format_credits(value: Decimal) -> str:
    """0.420000 → "0.42", 100.000000 → "100": credits exactly, without trailing zeros."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_credits_for_people(value: Decimal) -> str:
    """Credits on a page: thousands separated and no more digits than people read —
    1234.567891 → "1,234.57", 3.14159 → "3.1416", 0.00213456 → "0.002135" (four significant
    digits below one), 1000.000000 → "1,000". Downloads keep the exact ``format_credits``."""
    magnitude = abs(value)
    if magnitude >= 100:
        places = 2
    elif magnitude >= 1 or magnitude == 0:
        places = 4
    else:
        places = min(6, 3 - magnitude.adjusted())  # adjusted(): the leading digit's power
    rounded = value.quantize(Decimal(1).scaleb(-places))
    text = f"{rounded:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
