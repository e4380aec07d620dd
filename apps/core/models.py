"""Bases shared by the domain apps' models."""

from __future__ import annotations

from django.db import models


class CountersNotSaved(models.Model):
    """A row with counters that change only by the ledger's conditional UPDATEs
    (``COUNTER_FIELDS``): saving an instance that already exists writes every other field but
    never those, so a save (the admin's, a service's) can not write back the counters as they
    were when the instance was read, undoing what requests settled meanwhile."""

    COUNTER_FIELDS: tuple[str, ...] = ()

    class Meta:
        abstract = True

    def save(self, *args, update_fields=None, **kwargs) -> None:
        if not self._state.adding and update_fields is None:
            update_fields = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name not in self.COUNTER_FIELDS
            ]
        elif update_fields is not None:
            update_fields = [name for name in update_fields if name not in self.COUNTER_FIELDS]
        super().save(*args, update_fields=update_fields, **kwargs)
