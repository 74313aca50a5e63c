"""Booking rules on schedules (urn:extension:booking-rules) and occupied ranges (buffers)."""

import django.core.validators
from django.db import migrations, models

_INACTIVE = "('cancelled', 'noshow', 'entered-in-error')"
_OCCUPIED = 'tstzrange(COALESCE(occupied_start, "start"), COALESCE(occupied_end, "end"))'


def backfill_occupied(apps, schema_editor):
    Appointment = apps.get_model("scheduling", "Appointment")
    Appointment.objects.filter(occupied_start__isnull=True).update(
        occupied_start=models.F("start"), occupied_end=models.F("end")
    )


def occupied_exclusion(apps, schema_editor):
    """A booking's buffers are its occupant's time too: the occupant guard compares the
    occupied ranges (start and end widened by the schedule's buffers)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE scheduling_appointment DROP CONSTRAINT excl_appointment_occupant_overlap"
    )
    schema_editor.execute(
        "ALTER TABLE scheduling_appointment ADD CONSTRAINT excl_appointment_occupant_overlap "
        f"EXCLUDE USING gist (organization_id WITH =, occupant WITH =, seat WITH =, {_OCCUPIED} "
        f"WITH &&) WHERE (occupant <> '' AND rrule = '' AND status NOT IN {_INACTIVE})"
    )


def plain_exclusion(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE scheduling_appointment DROP CONSTRAINT excl_appointment_occupant_overlap"
    )
    schema_editor.execute(
        "ALTER TABLE scheduling_appointment ADD CONSTRAINT excl_appointment_occupant_overlap "
        'EXCLUDE USING gist (organization_id WITH =, occupant WITH =, seat WITH =, tstzrange("start", "end") '
        f"WITH &&) WHERE (occupant <> '' AND rrule = '' AND status NOT IN {_INACTIVE})"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0004_occupancy"),
    ]

    operations = [
        migrations.AddField(
            model_name="appointment",
            name="occupied_end",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="appointment",
            name="occupied_start",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="schedule",
            name="buffer_after_minutes",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(240),
                ],
                verbose_name="keep … minutes free after each booking",
            ),
        ),
        migrations.AddField(
            model_name="schedule",
            name="buffer_before_minutes",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(240),
                ],
                verbose_name="keep … minutes free before each booking",
            ),
        ),
        migrations.AddField(
            model_name="schedule",
            name="cancellation_cutoff_hours",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(8760),
                ],
                verbose_name="patients may cancel or move up to … hours before",
            ),
        ),
        migrations.AddField(
            model_name="schedule",
            name="capacity",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="For group sessions; empty means one patient per slot.",
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(1000),
                ],
                verbose_name="patients per slot",
            ),
        ),
        migrations.AddField(
            model_name="schedule",
            name="max_active_per_patient",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(1000),
                ],
                verbose_name="at most … upcoming bookings per patient",
            ),
        ),
        migrations.AddField(
            model_name="schedule",
            name="maximum_advance_days",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(1825),
                ],
                verbose_name="book at most … days ahead",
            ),
        ),
        migrations.AddField(
            model_name="schedule",
            name="minimum_notice_minutes",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(525600),
                ],
                verbose_name="book at least … minutes ahead",
            ),
        ),
        migrations.RunPython(backfill_occupied, migrations.RunPython.noop),
        migrations.RunPython(occupied_exclusion, plain_exclusion),
    ]
