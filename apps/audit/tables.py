"""The audit log as a table (page, CSV)."""

from __future__ import annotations

from apps.core.tables import Column, Table


def audit_table(*, entries, with_grant: bool) -> Table:
    columns = [Column("When"), Column("Who"), Column("Action")]
    columns += [Column("Grant")] if with_grant else []
    columns += [Column("Target"), Column("Change")]
    table = Table(
        name="audit",
        title="Audit log",
        columns=columns,
        empty_message="No admin actions recorded yet.",
    )
    for entry in entries:
        grant = [entry.grant.identifier if entry.grant else ""] if with_grant else []
        table.add(
            entry.created,
            entry.who,
            entry.get_action_display(),
            *grant,
            entry.target,
            entry.change_text,
            row_id=entry.action,
        )
    return table
