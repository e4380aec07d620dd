"""The price of a request, in exact decimal arithmetic.

Prices are Decimal credits per 1M tokens (6 decimal places). The cost of a request is

    prompt_tokens * prompt_price / 10⁶ + completion_tokens * completion_price / 10⁶

computed exactly (a local Decimal context wide enough that nothing is rounded on the way) and
then rounded **once**, on the sum, to 0.000001 credits with ROUND_HALF_UP — the resolution every
credit column stores. Half-up is the rounding people check bills with: the Comtegra example
(18 * 19.78 + 16 * 167.66 per 1M = 0.0030386) gives 0.003039. The difference to the exact price
is below half a micro-credit per request, in either direction; rounding the sum rather than each
part keeps it that small. A request whose exact price is below 0.0000005 credits costs 0.

The rule is monotone in both token counts, so a hold computed for ``max_completion_tokens``
always covers the charge for any smaller number of completion tokens.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext

CREDIT_QUANTUM = Decimal("0.000001")
TOKENS_PER_PRICE = 1_000_000
_PRECISION = 80  # digits: far beyond any product of token counts and 18-digit prices


def _check_tokens(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def _check_prices(**prices: Decimal) -> None:
    for name, value in prices.items():
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
            raise ValueError(f"{name} must be a non-negative Decimal, not {value!r}")


def credits_for(
    *, prompt_tokens: int, completion_tokens: int, prompt_price: Decimal, completion_price: Decimal
) -> Decimal:
    """The credits a request costs, rounded once to 0.000001 half-up."""
    _check_tokens(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    _check_prices(prompt_price=prompt_price, completion_price=completion_price)
    with localcontext(prec=_PRECISION):
        exact = (prompt_tokens * prompt_price + completion_tokens * completion_price) / (
            TOKENS_PER_PRICE
        )
        return exact.quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_UP)


def as_credits(value) -> Decimal | None:
    """A credit column's value as a Decimal at its 6 places: PostgreSQL returns a Decimal,
    SQLite (which keeps decimals as REAL) a float or an int."""
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(str(value)).quantize(CREDIT_QUANTUM)


def affordable_completion_tokens(
    *,
    budget: Decimal,
    prompt_tokens: int,
    max_completion_tokens: int,
    prompt_price: Decimal,
    completion_price: Decimal,
) -> int | None:
    """The most completion tokens (up to ``max_completion_tokens``) whose request fits in
    ``budget``; None when not even the prompt fits.

    With half-up rounding, ``credits_for(...) <= B`` exactly when the unrounded price is below
    ``B + quantum/2``, which gives the bound in closed form.
    """
    _check_tokens(prompt_tokens=prompt_tokens, max_completion_tokens=max_completion_tokens)
    _check_prices(prompt_price=prompt_price, completion_price=completion_price)
    budget = budget.quantize(CREDIT_QUANTUM, rounding=ROUND_FLOOR)
    prices = {"prompt_price": prompt_price, "completion_price": completion_price}

    def fits(tokens: int) -> bool:
        cost = credits_for(prompt_tokens=prompt_tokens, completion_tokens=tokens, **prices)
        return cost <= budget

    if not fits(0):
        return None
    if completion_price == 0:
        return max_completion_tokens
    with localcontext(prec=_PRECISION):
        room = (budget + CREDIT_QUANTUM / 2) * TOKENS_PER_PRICE - prompt_tokens * prompt_price
        tokens = int((room / completion_price).to_integral_value(rounding=ROUND_CEILING)) - 1
    tokens = max(0, min(tokens, max_completion_tokens))
    while tokens > 0 and not fits(tokens):  # defensive; the closed form is exact
        tokens -= 1
    return tokens
