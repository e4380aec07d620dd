from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class Affiliation(models.TextChoices):
    ACADEMIC = "academic", "Academic"
    COMMERCIAL = "commercial", "Commercial"


class User(AbstractUser):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    affiliation = models.CharField(
        max_length=16, choices=Affiliation.choices, default=Affiliation.ACADEMIC
    )

    @property
    def is_commercial(self) -> bool:
        return self.affiliation == Affiliation.COMMERCIAL

    @property
    def signs_in_only_through_provider(self) -> bool:
        """Made by (or linked to) an identity provider's sign-in, and no Anvil password: its
        password is the provider's, and Anvil's pages give it none (no reset, no set); staff
        can still give it one in the admin."""
        return not self.has_usable_password() and self.provider_identities.exists()

    def __str__(self) -> str:
        return self.username


class ProviderIdentity(models.Model):
    """A person's account at an OpenID Connect provider. The provider's issuer and its stable
    subject (``iss`` + ``sub``) say who someone is; an e-mail address alone never does."""

    user = models.ForeignKey(User, models.CASCADE, related_name="provider_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)
    last_sign_in = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "provider identities"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], name="accounts_identity_unique_subject_per_issuer"
            ),
            models.UniqueConstraint(
                fields=["user", "issuer"], name="accounts_identity_unique_user_per_issuer"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
