from __future__ import annotations

from decimal import Decimal

import pytest

from apps.core.formats import format_credits, format_credits_for_people


@pytest.mark.parametrize(
    ("exact", "shown"),
    [
        ("1234.567891", "1,234.57"),
        ("1000.000000", "1,000"),  # Decimal.normalize() wrote 1E+3
        ("3.141590", "3.1416"),
        ("0.002134", "0.002134"),
        ("0.00213456", "0.002135"),
        ("0.000001", "0.000001"),
        ("0", "0"),
    ],
)
def test_it_writes_credits_for_people(exact, shown):
    assert format_credits_for_people(Decimal(exact)) == shown


def test_downloads_keep_the_exact_value():
    assert format_credits(Decimal("1234.567891")) == "1234.567891"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("1234567.500001", "1,234,567.500001"),
        ("-1000", "-1,000"),
        ("12", "12"),
        ("no limit", "no limit"),
    ],
)
def test_table_numbers_are_grouped_but_keep_every_digit(text, shown):
    from apps.core.tables import grouped

    assert grouped(text) == shown
