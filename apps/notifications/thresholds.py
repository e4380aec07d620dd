"""E-mail people when credits run low: a member at 80 % and 100 % of their monthly limit in a
grant (to the member, once per month), a grant at 80 % and 100 % of its credit pool (to the
team's managers, once per allocation: a top-up re-arms it). Counted on settled credits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from apps.grants.models import Grant
from apps.limits.models import MemberLimit
from apps.notifications.models import NotificationKind
from apps.notifications.services import Subject, notification_send
from apps.teams.models import Membership, Role
from apps.usage.models import MemberMonthCounter
from apps.usage.periods import period_for

THRESHOLDS = (80, 100)  # percent
FIRST = Decimal(THRESHOLDS[0]) / 100


def reached(*, used: Decimal, limit: Decimal) -> list[int]:
    return [t for t in THRESHOLDS if used * 100 >= limit * t]


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _member_message(counter, percent: int) -> tuple[str, str]:
    grant = counter.grant.identifier
    title = f"You have used {percent} % of your monthly limit in {grant}"
    lines = [
        f"Hello {counter.user.get_username()},",
        "",
        f"in {counter.period} your API keys in grant {grant} have used {plain(counter.used)} "
        f"of your monthly limit of {plain(counter.limit)} credits ({percent} % or more).",
    ]
    if percent >= 100:
        lines.append("Further requests are refused until next month or until a grant manager")
        lines.append("raises your limit.")
    return title, "\n".join([*lines, "", "— Anvil", ""])


def member_limits_notify(*, now: dt.datetime | None = None) -> int:
    """Notify members at 80 % / 100 % of their monthly limit this month; returns mails sent."""
    period = period_for(now or timezone.now())
    limits = MemberLimit.objects.filter(grant=OuterRef("grant"), user=OuterRef("user"))
    counters = (
        MemberMonthCounter.objects.filter(period=period)
        .annotate(limit=Subquery(limits.values("monthly_limit")[:1]))
        .filter(limit__gt=0, used__gte=F("limit") * FIRST)
        .select_related("grant", "user")
        .order_by("pk")
    )
    return sum(_member_notify(counter, period) for counter in counters)


def _member_notify(counter: MemberMonthCounter, period: str) -> bool:
    subject = Subject(
        kind=NotificationKind.MEMBER_LIMIT,
        target=f"member:{counter.grant.public_id}:{counter.user.public_id}",
        period=period,
    )
    sent = notification_send(
        subject=subject,
        thresholds=reached(used=counter.used, limit=counter.limit),
        recipients=[counter.user.email],
        message=lambda percent: _member_message(counter, percent),
    )
    return sent is not None


def _grant_message(grant: Grant, percent: int) -> tuple[str, str]:
    title = f"Grant {grant.identifier} has used {percent} % of its credits"
    lines = [
        f"Grant {grant.identifier} has used {plain(grant.credits_used)} of its "
        f"{plain(grant.credits_allocated)} credits ({percent} % or more); "
        f"{plain(grant.credits_left)} are left.",
    ]
    if percent >= 100:
        lines.append("Requests of its keys are refused until credits are added.")
    lines += ["", f"You receive this as a manager of team {grant.team.name}.", "", "— Anvil", ""]
    return title, "\n".join(lines)


def grant_pools_notify() -> int:
    """Notify each grant's managers at 80 % / 100 % of its pool; returns mails sent."""
    grants = (
        Grant.objects.filter(
            credits_allocated__gt=0, credits_used__gte=F("credits_allocated") * FIRST
        )
        .select_related("team")
        .order_by("pk")
    )
    return sum(_grant_notify(grant) for grant in grants)


def _grant_notify(grant: Grant) -> bool:
    managers = Membership.objects.filter(team=grant.team, role=Role.MANAGER)
    subject = Subject(
        kind=NotificationKind.GRANT_POOL,
        target=f"grant:{grant.public_id}",
        period=f"allocated:{plain(grant.credits_allocated)}",
    )
    sent = notification_send(
        subject=subject,
        thresholds=reached(used=grant.credits_used, limit=grant.credits_allocated),
        recipients=list(managers.values_list("user__email", flat=True)),
        message=lambda percent: _grant_message(grant, percent),
    )
    return sent is not None
