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

    def __str__(self) -> str:
        return self.username
