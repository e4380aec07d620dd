"""Demo data for the one-command start and for later issues' checks (``seed_demo``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.catalog.models import CatalogModel
from apps.grants.models import Grant
from apps.teams.models import Membership, Role, Team

DEMO_TEAM = "demo"
DEMO_GRANT = "demo-grant"
DEMO_CREDITS = Decimal("1000")
DEMO_USERS = {
    "manager": ("demo-admin", "demo-admin-password", Role.MANAGER),
    "member": ("demo-user", "demo-user-password", Role.MEMBER),
}


@dataclass
class DemoData:
    team: Team
    grant: Grant
    users: dict[str, User]
    passwords: dict[str, str]
    secrets: dict[str, str | None] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "team": self.team.name,
            "grant": self.grant.identifier,
            "grant_id": str(self.grant.public_id),
            "users": {
                role: {"username": user.username, "password": self.passwords[role]}
                for role, user in self.users.items()
            },
            "api_key": self.secrets.get("api_key"),
            "management_key": self.secrets.get("management_key"),
        }


def _demo_user(*, username: str, password: str) -> User:
    user, _ = User.objects.get_or_create(
        username=username, defaults={"email": f"{username}@demo.invalid"}
    )
    user.set_password(password)
    user.save(update_fields=["password"])
    return user


@transaction.atomic
def demo_seed() -> DemoData:
    """Create (or bring back to its known state) the demo team, its users and its grant."""
    team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
    users, passwords = {}, {}
    for role_name, (username, password, role) in DEMO_USERS.items():
        user = _demo_user(username=username, password=password)
        Membership.objects.update_or_create(team=team, user=user, defaults={"role": role})
        users[role_name], passwords[role_name] = user, password
    today = timezone.localdate()
    grant, _ = Grant.objects.get_or_create(
        identifier=DEMO_GRANT,
        defaults={
            "team": team,
            "credits_allocated": DEMO_CREDITS,
            "valid_from": today,
            "valid_until": today + dt.timedelta(days=365),
        },
    )
    grant.allowed_models.add(*CatalogModel.objects.filter(active=True))
    return DemoData(team=team, grant=grant, users=users, passwords=passwords)
