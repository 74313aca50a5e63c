"""Resource versions: ``version`` on every stored FHIR resource, moved on by the database.

FHIR ``meta.versionId`` and the read ETag must change whenever a stored resource changes,
by any path: services, the admin, ``import_fhir``, a ``QuerySet.update()`` or an operator's
SQL. Only the database sees all of those, so a trigger adds one to ``version`` on every
UPDATE of a row (and renews ``updated_at`` when the statement left it unchanged, so
``meta.lastUpdated`` moves too). Inserts start at 1 (the column default).

The trigger SQL, per vendor, is in ``scheduling.db.version_triggers``, which also puts
SQLite's back after a later migration rebuilds a table.
"""

from django.db import migrations, models

from scheduling.db import version_triggers

TABLES = version_triggers.TABLES
MODELS = (
    "patient",
    "practitioner",
    "practitionerrole",
    "schedule",
    "slot",
    "appointment",
    "appointmentresponse",
)


def _install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(version_triggers.PG_FUNCTION)
        for table in TABLES:
            schema_editor.execute(version_triggers.pg_trigger(table))
    elif vendor == "sqlite":
        for table in TABLES:
            schema_editor.execute(version_triggers.sqlite_trigger(table))
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
