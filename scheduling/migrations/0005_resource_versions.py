"""Resource versions: ``version`` on every stored FHIR resource, moved on by the database.

FHIR ``meta.versionId`` and the read ETag must change whenever a stored resource changes,
by any path: services, the admin, ``import_fhir``, a ``QuerySet.update()`` or an operator's
SQL. Only the database sees all of those, so a trigger adds one to ``version`` on every
UPDATE of a row (and renews ``updated_at`` when the statement left it unchanged, so
``meta.lastUpdated`` moves too). Inserts start at 1 (the column default).

PostgreSQL: a BEFORE UPDATE row trigger sets ``NEW.version = OLD.version + 1`` (whatever
the statement wrote). SQLite cannot change NEW in a trigger: an AFTER UPDATE row trigger
writes the row again; with ``recursive_triggers`` off (SQLite's default, and Django does not
change it) that write does not fire the trigger again.
"""

from django.db import migrations, models

TABLES = (
    "scheduling_patient",
    "scheduling_practitioner",
    "scheduling_practitionerrole",
    "scheduling_schedule",
    "scheduling_slot",
    "scheduling_appointment",
    "scheduling_appointmentresponse",
)
MODELS = (
    "patient",
    "practitioner",
    "practitionerrole",
    "schedule",
    "slot",
    "appointment",
    "appointmentresponse",
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
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_version BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION scheduling_bump_version()"
            )
    elif vendor == "sqlite":
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_version AFTER UPDATE ON {table} FOR EACH ROW "
                f"BEGIN UPDATE {table} SET version = OLD.version + 1, "
                f"updated_at = CASE WHEN NEW.updated_at IS OLD.updated_at "
                f"THEN {SQLITE_NOW} ELSE NEW.updated_at END "
                "WHERE id = NEW.id; END"
            )
    else:
        raise NotImplementedError(f"Version triggers are not written for {vendor}.")


def _uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_version ON {table}")
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_version")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS scheduling_bump_version()")


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0004_occupancy"),
    ]

    operations = [
        # Plain ADD COLUMN on both vendors: Django's SQLite AddField of a column with a
        # default rebuilds the table, which would drop the data-stamp triggers of 0003.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name=name,
                    name="version",
                    field=models.IntegerField(db_default=1, editable=False),
                )
                for name in MODELS
            ],
            database_operations=[
                migrations.RunSQL(
                    f"ALTER TABLE {table} ADD COLUMN version integer NOT NULL DEFAULT 1",
                    f"ALTER TABLE {table} DROP COLUMN version",
                )
                for table in TABLES
            ],
        ),
        migrations.RunPython(_install, _uninstall),
    ]
