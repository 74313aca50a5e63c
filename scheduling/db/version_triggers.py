"""The triggers that move ``version`` on every UPDATE of a stored FHIR resource.

Migration 0005 installs them; on SQLite a later migration that rebuilds a table (Django's
way of adding most columns there) drops that table's triggers, so ``post_migrate`` puts any
missing one back (``IF NOT EXISTS``), as ``stamp_triggers`` does for the data stamps.
PostgreSQL keeps triggers across ``ALTER TABLE``.

PostgreSQL: a BEFORE UPDATE row trigger sets ``NEW.version = OLD.version + 1`` whatever the
statement wrote, and renews ``updated_at`` when the statement left it unchanged. SQLite
cannot change NEW in a trigger: an AFTER UPDATE row trigger writes the row again; with
``recursive_triggers`` off (SQLite's default, which Django keeps) that write does not fire
the trigger again.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

TABLES = (
    "scheduling_patient",
    "scheduling_practitioner",
    "scheduling_practitionerrole",
    "scheduling_schedule",
    "scheduling_slot",
    "scheduling_appointment",
    "scheduling_appointmentresponse",
)

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION scheduling_bump_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;
"""

# Django stores SQLite datetimes as naive UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]".
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def pg_trigger(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_version BEFORE UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION scheduling_bump_version()"
    )


def sqlite_trigger(table: str, *, if_not_exists: bool = False) -> str:
    guard = "IF NOT EXISTS " if if_not_exists else ""
    # Table names come from TABLES above, never from input.
    return (
        f"CREATE TRIGGER {guard}{table}_version AFTER UPDATE ON {table} FOR EACH ROW "  # noqa: S608
        f"BEGIN UPDATE {table} SET version = OLD.version + 1, "
        f"updated_at = CASE WHEN NEW.updated_at IS OLD.updated_at "
        f"THEN {_SQLITE_NOW} ELSE NEW.updated_at END "
        "WHERE id = NEW.id; END"
    )


def ensure_sqlite_triggers(using: str = "default", **_: Any) -> None:
    """Create the version triggers that a table rebuild dropped (SQLite only)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for table in TABLES:
            if table not in tables:
                continue
            columns = {
                c.name for c in connection.introspection.get_table_description(cursor, table)
            }
            if "version" in columns:  # before migration 0005 there is nothing to keep
                cursor.execute(sqlite_trigger(table, if_not_exists=True))
