"""What grants tells the apps above it when a grant changes.

``grant_saved`` is sent by the grant admin inside its transaction, after the save, with
``grant``, ``actor`` (who saved it) and ``before``: the stored ``credits_allocated``,
``valid_from`` and ``valid_until`` as they were (None for a new grant). A receiver's writes
commit or roll back with the grant; the audit log records a new credit pool, the key cache
drops the grant's keys when its validity dates moved.
"""

from __future__ import annotations

from django.dispatch import Signal

grant_saved = Signal()
