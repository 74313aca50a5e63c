"""Holds: a slot kept for a patient for a few minutes, then confirmed or left to lapse.

A hold is an appointment ``pending`` with ``held_until``. It lapses by itself: from that
instant it occupies nothing and reads as cancelled ("hold expired"), whether or not any
job has run (the engine and the selectors compare ``held_until`` with their clock). The
database is tidied later, by the next booking that needs the time and by
:func:`appointment_holds_expire` (the ``expire_holds`` command); correctness never waits
for either.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction

from scheduling import selectors
from scheduling.errors import Conflict, InvalidInput, NotFound, gettext_noop
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    Organization,
    ParticipationStatus,
    Patient,
)
from scheduling.services.booking import BookingResult, appointment_book
from scheduling.services.claims import expire_lapsed_holds, lock_occupants, patient_lock_key
from scheduling.services.common import audit, clinic_time, iso

__all__ = [
    "DEFAULT_HOLD_DURATION",
    "MAX_HOLD_DURATION",
    "MIN_HOLD_DURATION",
    "appointment_confirm",
    "appointment_hold",
    "appointment_holds_expire",
]

MIN_HOLD_DURATION = timedelta(seconds=10)
MAX_HOLD_DURATION = timedelta(minutes=60)
DEFAULT_HOLD_DURATION = timedelta(minutes=5)
_HOLD_DURATION = "holdDuration"


def appointment_hold(
    *,
    organization: Organization,
    patient: Patient,
    schedule_id: str,
    start: datetime,
    practitioner_role_id: str,
    comment: str,
    actor: str,
    hold_duration: timedelta = DEFAULT_HOLD_DURATION,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> BookingResult:
    """Hold the slot of ``schedule_id`` at ``start`` for ``patient`` for ``hold_duration``.

    A booking like any other (same rules, same errors, same Idempotency-Key handling), with
    status ``pending`` and ``held_until = now + hold_duration``. InvalidInput for a duration
    outside 10 seconds to 60 minutes.
    """
    if not MIN_HOLD_DURATION <= hold_duration <= MAX_HOLD_DURATION:
        raise InvalidInput(
            gettext_noop("holdDuration must be between 10 s and 60 min (got %(seconds)s s)."),
            expression=[_HOLD_DURATION],
            params={"seconds": _seconds(hold_duration)},
        )
    now = now or selectors.utc_now()
    # Whole seconds, rounded up: the instant a client is shown (seconds precision) is the
    # instant the hold lapses, and it is never shorter than asked for.
    held_until = _ceil_second(now + hold_duration)
    return appointment_book(
        organization=organization,
        patient=patient,
        schedule_id=schedule_id,
        start=start,
        practitioner_role_id=practitioner_role_id,
        status=AppointmentStatus.PENDING,
        comment=comment,
        actor=actor,
        idempotency_key=idempotency_key,
        held_until=held_until,
        hold_duration=hold_duration,
        now=now,
    )


def appointment_confirm(
    *, organization: Organization, appointment: Appointment, actor: str, now: datetime | None = None
) -> Appointment:
    """Turn a live hold into a booking (``booked``, no expiry). Conflict for anything else:
    a lapsed hold, a confirmed one, an appointment that never was a hold.

    It queues on the same occupant and patient locks as every booking, and reads the clock
    only once it holds them: a booking that found the hold lapsed and took its time has
    committed by then (and tidied the hold), so a confirmation never wins a time that
    someone else was given, however close to the expiry the two arrive.
    """
    with transaction.atomic():
        lock_occupants(
            organization=organization,
            keys={appointment.occupant, patient_lock_key(appointment.patient)},
        )
        locked = (
            Appointment.objects.select_for_update()
            .filter(organization=organization, pk=appointment.pk)
            .first()
        )
        if locked is None:
            raise NotFound(
                gettext_noop("Appointment '%(appointment)s' was not found."),
                params={"appointment": appointment.fhir_id},
            )
        now = now or selectors.utc_now()
        if not locked.is_held:
            raise Conflict(
                gettext_noop(
                    "Appointment '%(appointment)s' is %(status)s, not a held appointment: only "
                    "a live hold can be confirmed."
                ),
                expression=["status"],
                params={"appointment": locked.fhir_id, "status": locked.status},
            )
        held_until = locked.held_until
        assert held_until is not None  # is_held
        if locked.hold_lapsed(now):
            raise Conflict(
                gettext_noop(
                    "The hold on appointment '%(appointment)s' expired at %(time)s; its slot "
                    "may be taken: hold it again."
                ),
                expression=["status"],
                params={
                    "appointment": locked.fhir_id,
                    "time": clinic_time(held_until, organization.zone),
                },
            )
        locked.status = AppointmentStatus.BOOKED
        locked.held_until = None
        locked.practitioner_status = ParticipationStatus.ACCEPTED
        locked.save(update_fields=["status", "held_until", "practitioner_status", "updated_at"])
        audit(
            organization=organization,
            actor=actor,
            action=AuditEvent.Action.CONFIRMED,
            appointment=locked,
            detail={
                "status": [AppointmentStatus.PENDING.value, AppointmentStatus.BOOKED.value],
                "heldUntil": iso(held_until),
            },
        )
    return locked


def appointment_holds_expire(
    *, organization: Organization, actor: str, now: datetime | None = None
) -> int:
    """Write down what the clock already says: mark this organisation's lapsed holds
    cancelled ("hold expired"), with an AuditEvent each. Returns how many.

    Housekeeping only (reads already treat lapsed holds as cancelled); it keeps the table
    honest for reports, exports and direct SQL.
    """
    with transaction.atomic():
        return expire_lapsed_holds(
            organization=organization, now=now or selectors.utc_now(), actor=actor
        )


def _ceil_second(value: datetime) -> datetime:
    if value.microsecond == 0:
        return value
    return value.replace(microsecond=0) + timedelta(seconds=1)


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g}"
