"""Occupancy: appointments know whose time they take, and the database refuses overlaps.

On PostgreSQL two exclusion constraints (btree_gist) make a double booking impossible
whatever the code path: no two active plain appointments of one occupant overlap in the same
seat, and no two active plain appointments of one patient overlap. ``organization_id`` leads
both, so they still hold when the tables are distributed by organisation. What a constraint
cannot see (occurrences of recurring appointments, blocked time, capacity) is checked by the
services under the per-occupant row lock of ``OccupantLock``.
"""

import django.db.models.deletion
from django.db import migrations, models


_INACTIVE = "('cancelled', 'noshow', 'entered-in-error')"
_OCCUPANT_EXCLUSION = (
    "ALTER TABLE scheduling_appointment ADD CONSTRAINT excl_appointment_occupant_overlap "
    "EXCLUDE USING gist (organization_id WITH =, occupant WITH =, seat WITH =, "
    'tstzrange("start", "end") WITH &&) '
    f"WHERE (occupant <> '' AND rrule = '' AND status NOT IN {_INACTIVE})"
)
_PATIENT_EXCLUSION = (
    "ALTER TABLE scheduling_appointment ADD CONSTRAINT excl_appointment_patient_overlap "
    "EXCLUDE USING gist (organization_id WITH =, patient_id WITH =, "
    'tstzrange("start", "end") WITH &&) '
    f"WHERE (rrule = '' AND status NOT IN {_INACTIVE})"
)


def backfill_occupants(apps, schema_editor):
    Appointment = apps.get_model("scheduling", "Appointment")
    for appointment in Appointment.objects.select_related(
        "schedule__practitioner_role", "practitioner_role"
    ).iterator():
        schedule = appointment.schedule
        role = schedule.practitioner_role if schedule else appointment.practitioner_role
        practitioner_id = (schedule.practitioner_id if schedule else None) or (
            role.practitioner_id if role else None
        )
        if practitioner_id:
            key = f"practitioner:{practitioner_id}"
        elif role is not None:
            key = f"role:{role.pk}"
        elif schedule is not None:
            key = f"schedule:{schedule.pk}"
        else:
            key = ""
        if key != appointment.occupant:
            Appointment.objects.filter(pk=appointment.pk).update(occupant=key)


def add_exclusion_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    schema_editor.execute(_OCCUPANT_EXCLUSION)
    schema_editor.execute(_PATIENT_EXCLUSION)


def drop_exclusion_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in ("excl_appointment_occupant_overlap", "excl_appointment_patient_overlap"):
        schema_editor.execute(f"ALTER TABLE scheduling_appointment DROP CONSTRAINT {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0003_data_stamp"),
    ]

    operations = [
        migrations.CreateModel(
            name="OccupantLock",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=40)),
            ],
            options={
                "verbose_name": "occupant lock",
            },
        ),
        migrations.RemoveConstraint(
            model_name="appointment",
            name="uniq_active_appointment_per_slot",
        ),
        migrations.AddField(
            model_name="appointment",
            name="held_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="appointment",
            name="occupant",
            field=models.CharField(blank=True, editable=False, max_length=40),
        ),
        migrations.AddField(
            model_name="appointment",
            name="seat",
            field=models.PositiveSmallIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="occupantlock",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, to="scheduling.organization"
            ),
        ),
        migrations.AddConstraint(
            model_name="occupantlock",
            constraint=models.UniqueConstraint(
                fields=("organization", "key"), name="uniq_occupant_lock"
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("created", "Created"),
                    ("held", "Held"),
                    ("confirmed", "Confirmed"),
                    ("cancelled", "Cancelled"),
                    ("hold-expired", "Hold expired"),
                    ("rescheduled", "Rescheduled"),
                    ("status-changed", "Status changed"),
                    ("participant-status", "Participant status"),
                    ("noshow", "No-show"),
                    ("updated", "Updated"),
                    ("imported", "Imported"),
                    ("blocked", "Time blocked"),
                    ("unblocked", "Time unblocked"),
                ],
                max_length=32,
            ),
        ),
        migrations.RunPython(backfill_occupants, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="appointment",
            constraint=models.UniqueConstraint(
                condition=models.Q(
                    models.Q(("occupant", ""), _negated=True),
                    ("rrule", ""),
                    models.Q(
                        ("status__in", ["cancelled", "noshow", "entered-in-error"]), _negated=True
                    ),
                ),
                fields=("organization", "occupant", "start", "seat"),
                name="uniq_active_appointment_per_occupant_start",
            ),
        ),
        migrations.AddIndex(
            model_name="appointment",
            index=models.Index(
                fields=["organization", "occupant", "end"], name="appt_org_occupant_end"
            ),
        ),
        migrations.RunPython(add_exclusion_constraints, drop_exclusion_constraints),
    ]
