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
from apps.keys.models import ApiKey, ManagementKey
from apps.keys.services import (
    api_key_archive,
    api_key_create,
    api_keys_forget_grant,
    management_key_create,
    management_key_revoke,
)
from apps.teams.models import Membership, Role, Team
from apps.teams.services import membership_create, membership_role_change

DEMO_TEAM = "demo"
DEMO_GRANT = "demo-grant"
DEMO_CREDITS = Decimal("1000")
DEMO_KEY_NAME = "demo-key"
DEMO_KEY_DAYS = 365
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


def _demo_keys(*, grant: Grant, owner: User, rotate: bool) -> dict[str, str | None]:
    """The demo member's API key and management key: secrets only when newly issued."""
    api_keys = ApiKey.objects.filter(
        grant=grant, owner=owner, name=DEMO_KEY_NAME, archived_at__isnull=True
    )
    management_keys = ManagementKey.objects.filter(
        owner=owner, name=DEMO_KEY_NAME, revoked_at__isnull=True
    )
    if rotate:
        for key in list(api_keys):
            api_key_archive(key=key)
        for key in list(management_keys):
            management_key_revoke(key=key)
    expires_at = timezone.now() + dt.timedelta(days=DEMO_KEY_DAYS)
    secrets = {"api_key": None, "management_key": None}
    if not api_keys.all().exists():  # .all(): a fresh query after the rotation
        _, secrets["api_key"] = api_key_create(
            grant=grant,
            owner=owner,
            name=DEMO_KEY_NAME,
            expires_at=expires_at,
            comment="Created by seed_demo",
        )
    if not management_keys.all().exists():
        _, secrets["management_key"] = management_key_create(
            owner=owner, name=DEMO_KEY_NAME, expires_at=expires_at
        )
    return secrets


@transaction.atomic
def demo_seed(*, rotate: bool = False) -> DemoData:
    """Create (or bring back to its known state) the demo team, its users and its grant."""
    team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
    users, passwords = {}, {}
    for role_name, (username, password, role) in DEMO_USERS.items():
        user = _demo_user(username=username, password=password)
        membership = Membership.objects.filter(team=team, user=user).first()
        if membership is None:
            membership_create(team=team, user=user, role=role)
        else:
            membership_role_change(membership=membership, role=role)
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
    if not grant.is_valid_on(today):  # a demo left alone for a year: make it work again
        grant.valid_from, grant.valid_until = today, today + dt.timedelta(days=365)
        grant.save(update_fields=["valid_from", "valid_until"])
        api_keys_forget_grant(grant=grant)
    grant.allowed_models.add(*CatalogModel.objects.filter(active=True))
    secrets = _demo_keys(grant=grant, owner=users["member"], rotate=rotate)
    return DemoData(team=team, grant=grant, users=users, passwords=passwords, secrets=secrets)
