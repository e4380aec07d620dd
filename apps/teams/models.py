from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Team(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.SlugField(max_length=100, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    MANAGER = "manager", "Manager"
    MEMBER = "member", "Member"


class Membership(models.Model):
    team = models.ForeignKey(Team, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    # Named by the identity provider's teams claim at the person's last sign-in: the next
    # sign-in whose claim no longer names the team removes it (apps.teams.services).
    provider_managed = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "user"], name="teams_membership_unique_user_per_team"
            ),
        ]

    @property
    def can_manage_members(self) -> bool:
        """Sees every member's consumption and sets members' monthly limits."""
        return self.role == Role.MANAGER

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"
