"""The accounting's domain errors and the names of the four budgets."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from apps.core.exceptions import ApplicationError
from apps.core.formats import format_credits


class Limit(models.TextChoices):
    """The four budgets a request must fit in, in the order they are reported on ties."""

    GRANT = "grant", "The grant's credits are used up"
    KEY_TOTAL = "key_total", "The key's total credit limit is reached"
    KEY_MONTHLY = "key_monthly", "The key's monthly credit limit is reached"
    MEMBER_MONTHLY = "member_monthly", "Your monthly credit limit in this grant is reached"


class QuotaExceeded(ApplicationError):
    """A request does not fit in one of its four budgets (HTTP 429, OpenAI's
    ``insufficient_quota``). ``limit`` names the budget, ``remaining`` is what it has left."""

    status = 429
    code = "insufficient_quota"

    def __init__(self, *, limit: str, remaining: Decimal) -> None:
        self.limit = Limit(limit)
        self.remaining = max(remaining, Decimal(0))
        super().__init__(f"{self.limit.label} ({format_credits(self.remaining)} credits left).")
