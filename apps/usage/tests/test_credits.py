from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest

from apps.usage.credits import affordable_completion_tokens, credits_for


def price(prompt_tokens, completion_tokens, prompt_price, completion_price) -> Decimal:
    return credits_for(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        prompt_price=Decimal(prompt_price),
        completion_price=Decimal(completion_price),
    )


def test_it_prices_the_comtegra_example_exactly():
    # 18 * 19.78 + 16 * 167.66 per 1M = 0.0030386 → 0.003039
    assert price(18, 16, "19.78", "167.66") == Decimal("0.003039")


def test_it_prices_prompt_and_completion_tokens_separately():
    assert price(1_000_000, 0, "0.5", "1.5") == Decimal("0.5")
    assert price(0, 1_000_000, "0.5", "1.5") == Decimal("1.5")
    assert price(2_000, 3_000, "0.5", "1.5") == Decimal("0.0055")


def test_it_rounds_half_up_once_on_the_sum():
    # 0.0000005 exactly is rounded up, just below it down.
    assert price(5, 0, "0.1", "0") == Decimal("0.000001")
    assert price(4, 0, "0.1", "0") == Decimal("0")
    # Each part alone (0.0000004) would round to 0; their sum (0.0000008) rounds to 0.000001.
    assert price(4, 4, "0.1", "0.1") == Decimal("0.000001")


def test_it_returns_six_decimal_places():
    assert price(18, 16, "19.78", "167.66").as_tuple().exponent == -6


def reference(prompt_tokens, completion_tokens, prompt_price, completion_price) -> Decimal:
    """The same rule in rational arithmetic: round half up to millionths."""
    exact = (
        prompt_tokens * Fraction(prompt_price) + completion_tokens * Fraction(completion_price)
    ) / 10**6
    millionths = math.floor(exact * 10**6 + Fraction(1, 2))
    return Decimal(millionths).scaleb(-6)


@pytest.mark.parametrize(
    "case",
    [
        (10**9, 10**9, "999999999999.999999", "0.000001"),
        (10**12, 1, "123456789012.345678", "0.5"),
        (987654321, 123456789, "0.000003", "999999.999999"),
    ],
)
def test_it_stays_exact_for_huge_numbers(case):
    assert price(*case) == reference(*case)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt_tokens": -1},
        {"completion_tokens": 1.5},
        {"prompt_tokens": True},
        {"prompt_price": 0.5},
        {"completion_price": Decimal("-1")},
        {"completion_price": Decimal("NaN")},
    ],
)
def test_it_refuses_bad_input(kwargs):
    args = {
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "prompt_price": Decimal(1),
        "completion_price": Decimal(1),
    }
    with pytest.raises(ValueError):
        credits_for(**{**args, **kwargs})


def brute_force(budget, prompt_tokens, most, prompt_price, completion_price):
    fitting = [
        n
        for n in range(most + 1)
        if price(prompt_tokens, n, prompt_price, completion_price) <= budget
    ]
    return max(fitting) if fitting else None


@pytest.mark.parametrize(
    ("budget", "prompt_tokens", "most", "prompt_price", "completion_price"),
    [
        ("0.003039", 18, 100, "19.78", "167.66"),
        ("0.003038", 18, 100, "19.78", "167.66"),
        ("0.000356", 18, 100, "19.78", "167.66"),
        ("0.000355", 18, 100, "19.78", "167.66"),
        ("0.000010", 0, 50, "1", "0.3"),
        ("1", 10, 30, "0.5", "1.5"),
        ("0.000001", 0, 40, "0", "0.01"),
    ],
)
def test_it_finds_the_most_affordable_completion_tokens(
    budget, prompt_tokens, most, prompt_price, completion_price
):
    found = affordable_completion_tokens(
        budget=Decimal(budget),
        prompt_tokens=prompt_tokens,
        max_completion_tokens=most,
        prompt_price=Decimal(prompt_price),
        completion_price=Decimal(completion_price),
    )
    assert found == brute_force(
        Decimal(budget), prompt_tokens, most, prompt_price, completion_price
    )


def test_it_affords_every_completion_token_of_a_free_completion():
    found = affordable_completion_tokens(
        budget=Decimal("1"),
        prompt_tokens=10,
        max_completion_tokens=4096,
        prompt_price=Decimal("1"),
        completion_price=Decimal("0"),
    )
    assert found == 4096
