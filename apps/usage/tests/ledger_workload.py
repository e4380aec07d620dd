"""The workload of the ledger's state machine (``test_ledger_state_machine``): the requests,
usages, limits and limit changes Hypothesis draws, and the clock the machine moves.

Budgets are a few requests deep (a request of chat-small costs at most 0.008 credits here), so
that refusals, partial holds and limits lowered below what is used all come up often.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import strategies as st

from apps.usage import ledger
from apps.usage.models import Hold, Outcome
from apps.usage.tests.ledger_model import QUANTUM, Counter
from apps.usage.tests.ledger_rows import warsaw


def credits(micro: int) -> Decimal:
    return Decimal(micro) * QUANTUM


def micros(low: int, high: int) -> st.SearchStrategy[int]:
    """Micro-credits spread evenly from ``low`` to about ``high`` (Hypothesis' integers favour
    the small ones), in bands of 500 plus an odd part."""
    return st.builds(int.__add__, st.sampled_from(range(low, high, 500)), st.integers(0, 499))


CREDITS = micros(1_000, 200_000).map(credits)
LIMITS = st.none() | micros(0, 30_000).map(credits)
# A new limit: so many micro-credits above (negative: below) nothing, what the budget has used,
# or what it has in use (used + held); or no limit ("none"; a grant: 0.1 credits above its use).
CHANGES = st.tuples(st.sampled_from(["zero", "used", "in_use", "none"]), micros(-3_000, 15_000))
WAYS = st.sampled_from(["sync", "async"])
TOKENS = st.integers(0, 4_000)
OUTCOMES = st.sampled_from(
    [Outcome.OK, Outcome.CLIENT_DISCONNECTED, Outcome.BACKEND_ERROR, Outcome.CANCELLED]
)
STARTS = [  # mid-month, just before a month's end, just before a year's end
    warsaw(2026, 3, 14, 12, 0),
    warsaw(2026, 3, 31, 23, 50),
    warsaw(2026, 12, 31, 23, 58),
]


@dataclass(frozen=True)
class UsageShape:
    """A request's real usage relative to its hold: ``completion`` all of its
    max_completion_tokens, part, over, or nothing at all (ended before the backend answered)."""

    prompt_delta: int
    completion: str
    tokens: int
    outcome: str

    def of(self, hold: Hold) -> ledger.Usage:
        if self.completion == "none":
            return ledger.Usage.unused(self.outcome)
        limit = hold.max_completion_tokens
        completion = {
            "all": limit,
            "part": min(self.tokens, limit),
            "over": limit + 1 + self.tokens,
        }
        prompt = max(0, hold.prompt_tokens + self.prompt_delta)
        return ledger.Usage(prompt, completion[self.completion], self.outcome)


@dataclass(frozen=True)
class Ask:
    """A request: by key 0, 1 (Alice's) or 2 (Bob's), for model 0 (chat-small), 1 (odd prices)
    or 2 (free)."""

    key: int
    model: int
    prompt_tokens: int
    max_completion_tokens: int
    allow_partial: bool
    ttl: int


ASKS = st.builds(
    Ask,
    key=st.integers(0, 2),
    model=st.integers(0, 2),
    prompt_tokens=TOKENS,
    max_completion_tokens=TOKENS,
    allow_partial=st.booleans(),
    ttl=st.sampled_from([60, 900, 3600]),
)
USAGES = st.builds(
    UsageShape,
    prompt_delta=st.integers(-500, 500),
    completion=st.sampled_from(["all", "part", "over", "none"]),
    tokens=st.integers(0, 3_000),
    outcome=OUTCOMES,
)


class Clock:
    """``timezone.now`` while the machine runs: moves only when a rule moves it."""

    moment: dt.datetime = STARTS[0]

    def now(self) -> dt.datetime:
        return self.moment


def resolve(change: tuple[str, int], counter: Counter, *, liftable: bool) -> Decimal | None:
    base, micro = change
    if base == "none":
        if liftable:
            return None
        base, micro = "in_use", 100_000
    start = {"zero": Decimal(0), "used": counter.used, "in_use": counter.in_use}[base]
    return max(Decimal(0), start + credits(micro))
