"""The soak's verdict: what the clients saw against what the ledger, the counters and the
logs say afterwards. Each check is PASS or FAIL with the figures behind it."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from bench.soak_clients import Record
from bench.soak_world import Budget, Facts, Key, LimitChange

EXPIRED = "expired"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"  {'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


def outcomes(records: list[Record]) -> list[tuple[str, int]]:
    return Counter(r.outcome for r in records).most_common()


def counters(facts: Facts) -> Check:
    shown = "; ".join(facts.mismatches[:5])
    return Check(
        "counters equal the ledger",
        not facts.mismatches,
        f"counters_reconcile found {len(facts.mismatches)} difference(s)"
        + (f": {shown}" if shown else ""),
    )


def holds(facts: Facts, *, swept_at_end: int) -> Check:
    """No hold open once settlements and the sweeper ran, and none that only the sweeper
    ended: nothing crashed, so an expired hold is a request that escaped its settlement."""
    expired = Counter()
    for (_, model), rows in facts.rows.items():
        expired[model] += sum(1 for _, outcome in rows if outcome == EXPIRED)
    open_holds = Counter(facts.open_holds)
    return Check(
        "no open hold after settlements and the sweeper",
        not +open_holds and not +expired,
        f"{sum(open_holds.values())} open{_by_model(open_holds)}; {sum(expired.values())} "
        f"expired by the sweeper{_by_model(expired)} ({swept_at_end} of them at the end)",
    )


def one_row_each(records: list[Record], facts: Facts, keys: list[Key]) -> Check:
    """Per key and model: every request answered 200 (whatever followed) or refused after
    its hold has a settled ledger row; one given up before any answer may have one; nothing
    else has. (Clients give up only on soak-slow, so on every other model the count is
    exact.)"""
    ids = {key.index: key.id for key in keys}
    must: Counter = Counter()
    may: Counter = Counter()
    for r in records:
        must[ids[r.key], r.model] += r.needs_row
        may[ids[r.key], r.model] += r.may_have_row
    rows = Counter(
        {slot: sum(1 for _, outcome in entries if outcome != EXPIRED)
         for slot, entries in facts.rows.items()}
    )  # fmt: skip
    missing, extra = Counter(), Counter()
    for slot in set(must) | set(may) | set(rows):
        missing[slot[1]] += max(0, must[slot] - rows[slot])
        extra[slot[1]] += max(0, rows[slot] - must[slot] - may[slot])
    detail = (
        f"{sum(must.values())} requests needed a row, {sum(may.values())} more might have one; "
        f"{sum(rows.values())} settled rows; {sum(missing.values())} missing"
        f"{_by_model(missing)}, {sum(extra.values())} extra{_by_model(extra)}"
    )
    return Check(
        "one ledger row per request that got a hold",
        not +missing and not +extra,
        detail,
    )


def _by_model(counts: Counter) -> str:
    counts = +counts
    return f" ({', '.join(f'{model} {n}' for model, n in counts.most_common())})" if counts else ""


def charges(records: list[Record], facts: Facts, keys: list[Key]) -> Check:
    """Every charge a client was told (X-Anvil-Credits-Charged, the stream's ``: anvil``
    comment) is a settled ledger row of that key and model with exactly those credits, each
    row matched once (per key and model, as multisets: requests carry no id into the ledger)."""
    ids = {key.index: key.id for key in keys}
    left = {
        slot: Counter(credits for credits, outcome in entries if outcome != EXPIRED)
        for slot, entries in facts.rows.items()
    }
    told = unmatched = 0
    examples = []
    for r in records:
        if r.charged is None:
            continue
        told += 1
        pool = left.get((ids[r.key], r.model), Counter())
        if pool[r.charged] > 0:
            pool[r.charged] -= 1
        else:
            unmatched += 1
            examples.append(f"key {r.key} {r.model} {r.action} told {r.charged}")
    detail = f"{told} charges told, {unmatched} without their ledger row"
    if examples:
        detail += f" ({'; '.join(examples[:3])})"
    return Check("credits told equal the ledger", told > 0 and not unmatched, detail)


def overshoot(changes: list[LimitChange], facts: Facts) -> Check:
    """No budget spent past what a limit change allowed. Requests admitted before a lowering
    may spend what they held when it came: after a limit is set to L, with U + H used and
    held right then, the budget's used + held may not pass max(L, U + H) up to its next
    change (read right before it), and what the ledger charged it in the end may not pass
    it after the last (U + H
    is read right after the change and once more a second later, so holds committed just
    after it under the old limit count too)."""
    by_budget: dict[Budget, list[LimitChange]] = defaultdict(list)
    for change in sorted(changes, key=lambda change: change.at):
        by_budget[change.budget].append(change)
    worst, over, beyond = Decimal(0), [], Decimal(0)
    for budget, steps in by_budget.items():
        allowed = None
        # what was in use right before each later change (so what a raise then admits is
        # not charged to the limit before it), then what the ledger charged in the end
        seen = [(f"at {step.at:.0f} s", step.in_use_before) for step in steps]
        seen.append(("in the end", facts.used[budget]))
        for (when, value), step in zip(seen, [None, *steps], strict=True):
            if step is not None:
                allowed = max(step.limit, *step.held_in)
            if allowed is not None and value > allowed:
                worst = max(worst, value - allowed)
                over.append(f"{budget} {when}: {value} > {allowed}")
        if not steps[-1].raised:
            beyond += max(Decimal(0), facts.used[budget] - steps[-1].limit)
    detail = (
        f"{len(changes)} changes of {len(by_budget)} budgets; largest overshoot {worst}; "
        f"spent past a lowered limit by requests admitted before it: {beyond} credits"
    )
    if over:
        detail += f" ({'; '.join(over[:3])})"
    return Check("no overshoot after a limit change", not over, detail)


def errors(records: list[Record], logs: list[Path]) -> Check:
    """No 500 seen by any client, no answer lost on the way (a connection dropped or timed
    out that the client did not give up on itself), no Traceback in any process log."""
    fives = sum(1 for r in records if r.status == 500)
    lost = Counter(r.ending for r in records if r.status is None and r.action != "give-up")
    tracebacks = {
        log.name: count
        for log in logs
        if (count := log.read_text(errors="replace").count("Traceback"))
    }
    detail = f"{fives} answers 500; {sum(lost.values())} lost answers"
    if lost:
        detail += f" ({', '.join(f'{n} {ending}' for ending, n in lost.items())})"
    detail += f"; Traceback in logs: {tracebacks or 'none'} ({len(logs)} logs)"
    return Check("no 500 and no Traceback", not fives and not lost and not tracebacks, detail)


def coverage(records: list[Record], changes: list[LimitChange], events: dict) -> Check:
    """The run did what a soak must: every kind of request answered, every way of leaving
    seen, every kind of limit lowered, the revocation and the backend restart done."""
    endings = Counter(r.outcome for r in records)
    wanted = {
        "answered": any(r.status == 200 and r.action == "chat" for r in records),
        "streams read": endings["200 stream read"] > 0,
        "left mid-stream": endings["200 stream, client left mid-way"] > 0,
        "closed at finish": endings["200 stream, client closed at the finish chunk"] > 0,
        "gave up": endings["gave up before the answer"] > 0,
        "embeddings": any(r.status == 200 and r.action == "embedding" for r in records),
        "four kinds lowered": len({c.budget.kind for c in changes if not c.raised}) == 4,
        "revocation": "revoked_at" in events,
        "backend restart": bool(events.get("restarted")),
    }
    missing = [name for name, seen in wanted.items() if not seen]
    failed = events.get("errors", [])
    detail = "all seen" if not missing else f"not seen: {', '.join(missing)}"
    if failed:
        detail += f"; {len(failed)} failed: {'; '.join(failed[:3])}"
    return Check("the run covered every scenario", not missing and not failed, detail)
