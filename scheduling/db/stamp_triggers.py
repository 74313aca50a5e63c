"""Keep the SQLite data-stamp triggers of migration 0003 in place after every migration.

SQLite cannot alter most of a table in place, so Django's schema editor rebuilds it (new
table, copy, drop, rename) for a new column or constraint, and the old table's triggers go
with it. Without them a write would no longer renew the organisation's stamps and the
search caches would serve stale results. Rather than rely on every future migration to
remember, ``post_migrate`` recreates any that are missing (``IF NOT EXISTS``). PostgreSQL
keeps triggers across ``ALTER TABLE``, so nothing is needed there.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

#: Which stamp each table renews (as in migration 0003).
TABLES = {
    "scheduling_practitioner": "schedules",
    "scheduling_practitionerrole": "schedules",
    "scheduling_schedule": "schedules",
    "scheduling_slot": "bookings",
    "scheduling_appointment": "bookings",
}
_RENEW = (
    "INSERT INTO scheduling_datastamp (organization_id, schedules, bookings) "
    "VALUES ({row}.organization_id, random(), random()) "
    "ON CONFLICT (organization_id) DO UPDATE SET {kind} = excluded.{kind};"
)


def ensure_sqlite_triggers(using: str = "default", **_: Any) -> None:
    """Create the stamp triggers that a table rebuild dropped (SQLite only)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        if "scheduling_datastamp" not in tables:
            return
        for table, kind in TABLES.items():
            if table not in tables:
                continue
            for event, rows in (
                ("INSERT", ("NEW",)),
                ("UPDATE", ("NEW", "OLD")),
                ("DELETE", ("OLD",)),
            ):
                body = " ".join(_RENEW.format(row=row, kind=kind) for row in rows)
                cursor.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_data_stamp_{event.lower()} "
                    f"AFTER {event} ON {table} BEGIN {body} END"
                )
