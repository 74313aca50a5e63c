"""DataStamp: random stamps per organisation, renewed by triggers on every data change.

Two stamps, so that a booking does not discard what only depends on schedules:
``schedules`` (practitioners, roles, schedules) and ``bookings`` (slots, appointments).

PostgreSQL: a deferred row-level constraint trigger renews a stamp once per transaction,
at commit, so the stamp row is locked only for the last moment of a writing transaction
(bookings of one clinic do not queue behind each other for longer than their commit), and
a bulk import of thousands of rows renews it once. SQLite (one writer at a time): plain
row-level triggers.
"""

from django.db import migrations, models

#: Which stamp each table renews.
TABLES = {
    "scheduling_practitioner": "schedules",
    "scheduling_practitionerrole": "schedules",
    "scheduling_schedule": "schedules",
    "scheduling_slot": "bookings",
    "scheduling_appointment": "bookings",
}
PG_RANDOM = "floor(random() * 9000000000000000000)::bigint + 1"

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION scheduling_renew_{kind}_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    org text;
BEGIN
    FOREACH org IN ARRAY (
        CASE TG_OP
            WHEN 'INSERT' THEN ARRAY[NEW.organization_id]
            WHEN 'DELETE' THEN ARRAY[OLD.organization_id]
            ELSE ARRAY[NEW.organization_id, OLD.organization_id]
        END
    ) LOOP
        INSERT INTO scheduling_datastamp AS d
            (organization_id, schedules, bookings, {kind}_txid)
        VALUES (org, {random}, {random}, txid_current())
        ON CONFLICT (organization_id) DO UPDATE
            SET {kind} = EXCLUDED.{kind}, {kind}_txid = EXCLUDED.{kind}_txid
            WHERE d.{kind}_txid IS DISTINCT FROM EXCLUDED.{kind}_txid;
    END LOOP;
    RETURN NULL;
END
$$;
"""


def _install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for kind in ("schedules", "bookings"):
            schema_editor.execute(PG_FUNCTION.format(kind=kind, random=PG_RANDOM))
        for table, kind in TABLES.items():
            schema_editor.execute(
                f"CREATE CONSTRAINT TRIGGER {table}_data_stamp "
                f"AFTER INSERT OR UPDATE OR DELETE ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                f"EXECUTE FUNCTION scheduling_renew_{kind}_stamp()"
            )
        random_stamp = PG_RANDOM
    elif vendor == "sqlite":
        renew = (
            "INSERT INTO scheduling_datastamp (organization_id, schedules, bookings) "
            "VALUES ({row}.organization_id, random(), random()) "
            "ON CONFLICT (organization_id) DO UPDATE SET {kind} = excluded.{kind};"
        )
        for table, kind in TABLES.items():
            for event, rows in (
                ("INSERT", ("NEW",)),
                ("UPDATE", ("NEW", "OLD")),
                ("DELETE", ("OLD",)),
            ):
                body = " ".join(renew.format(row=row, kind=kind) for row in rows)
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_data_stamp_{event.lower()} "
                    f"AFTER {event} ON {table} BEGIN {body} END"
                )
        random_stamp = "random()"
    else:
        raise NotImplementedError(f"Data stamp triggers are not written for {vendor}.")
    # Organisations that already have data get stamps now, so caching starts at once.
    schema_editor.execute(
        "INSERT INTO scheduling_datastamp (organization_id, schedules, bookings) "
        f"SELECT id, {random_stamp}, {random_stamp} FROM scheduling_organization"
    )


def _uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_data_stamp ON {table}")
        else:
            for event in ("insert", "update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_data_stamp_{event}")
    if vendor == "postgresql":
        for kind in ("schedules", "bookings"):
            schema_editor.execute(f"DROP FUNCTION IF EXISTS scheduling_renew_{kind}_stamp()")


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0002_search_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="DataStamp",
            fields=[
                (
                    "organization_id",
                    models.CharField(max_length=64, primary_key=True, serialize=False),
                ),
                ("schedules", models.BigIntegerField()),
                ("bookings", models.BigIntegerField()),
                ("schedules_txid", models.BigIntegerField(null=True)),
                ("bookings_txid", models.BigIntegerField(null=True)),
            ],
            options={
                "verbose_name": "data stamp",
            },
        ),
        migrations.RunPython(_install, _uninstall),
    ]
