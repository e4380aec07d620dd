"""What teams tells the apps above it when people join or leave a team.

Both are sent by ``apps.teams.services`` inside the membership's transaction: a receiver's
writes commit or roll back with the membership, and an exception in a receiver undoes the
whole change. Each carries ``membership``, ``actor`` (who did it; None: the system) and ``via``
(how, when not by hand: "identity provider" for a sign-in's teams claim; "" otherwise).
"""

from __future__ import annotations

from django.dispatch import Signal

# After the membership row is inserted (limits: the newcomer gets the grants' collective
# monthly limits).
member_joined = Signal()

# Before the membership row is deleted, with the row locked (keys: the person's API keys in
# the team's grants are revoked).
member_leaving = Signal()

# After a member's role changed (audit: the change is logged); also carries ``before``, the
# role they had.
member_role_changed = Signal()
