"""Blocking a practitioner's time (a stored busy-unavailable Slot), and unblocking it.

Blocked time of one schedule blocks its occupant on every schedule (the engine reads it per
occupant). A block never hides a booking: blocking over active bookings is refused with the
bookings listed unless the caller confirms, and the bookings then stay as they are.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.db import transaction

from scheduling.errors import BlockHitsBookings, BusinessRuleViolation, Text, gettext_noop
from scheduling.models import AuditEvent, Organization, Schedule, Slot, SlotStatus
from scheduling.recurrence import Period
from scheduling.selectors.common import utc_now
from scheduling.selectors.occupancy import Occupant, occupying_appointments
from scheduling.services.claims import lock_occupants
from scheduling.services.common import clinic_time, iso, new_fhir_id

__all__ = ["time_block", "time_block_hits", "time_unblock"]


def time_block_hits(
    *, organization: Organization, schedule: Schedule, start: datetime, end: datetime, now: datetime
) -> list[Occupant]:
    """The active bookings of the schedule's occupant (on any schedule) that a block of
    ``start``-``end`` would cover."""
    return occupying_appointments(
        organization=organization,
        window=Period(start, end),
        now=now,
        occupant=schedule.occupant,
    )


def _describe(hit: Occupant, zone: ZoneInfo) -> Text:
    return Text(
        gettext_noop("%(patient)s, %(time)s (%(appointment)s)"),
        {
            "patient": hit.patient or Text(gettext_noop("a patient")),
            "time": clinic_time(hit.start, zone),
            "appointment": hit.label,
        },
    )


def time_block(
    *,
    organization: Organization,
    schedule: Schedule,
    start: datetime,
    end: datetime,
    comment: str,
    actor: str,
    confirm: bool = False,
    now: datetime | None = None,
) -> Slot:
    """Block ``start``-``end`` for the schedule's occupant. BlockHitsBookings (listing them)
    when active bookings fall inside, unless ``confirm``. Audited."""
    if end <= start:
        raise BusinessRuleViolation(
            gettext_noop("The end must be after the start."), expression=["end"]
        )
    now = now or utc_now()
    with transaction.atomic():
        lock_occupants(organization=organization, keys={schedule.occupant})
        hits = time_block_hits(
            organization=organization, schedule=schedule, start=start, end=end, now=now
        )
        if hits and not confirm:
            described = [_describe(h, organization.zone) for h in hits]
            raise BlockHitsBookings(
                gettext_noop(
                    "This block covers %(count)s booking(s); confirm to block the time anyway "
                    "(the bookings stay): %(bookings)s."
                ),
                bookings=described,
                params={"count": len(hits), "bookings": described},
            )
        slot = Slot.objects.create(
            organization=organization,
            fhir_id=new_fhir_id(),
            schedule=schedule,
            status=SlotStatus.BUSY_UNAVAILABLE,
            start=start,
            end=end,
            service_category=schedule.service_category,
            comment=comment,
        )
        AuditEvent.objects.create(
            organization=organization,
            actor=actor[:200],
            action=AuditEvent.Action.BLOCKED,
            appointment=None,
            appointment_fhir_id=f"Slot/{slot.fhir_id}",
            detail={
                "schedule": schedule.fhir_id,
                "start": iso(start),
                "end": iso(end),
                "comment": comment,
                "bookingsKept": [h.label for h in hits],
            },
        )
    return slot


def time_unblock(*, organization: Organization, slot: Slot, actor: str) -> None:
    """Remove a block (a busy-unavailable Slot); the time is free again. Audited."""
    if slot.status != SlotStatus.BUSY_UNAVAILABLE:
        raise BusinessRuleViolation(
            gettext_noop("Slot '%(slot)s' is %(status)s, not blocked time."),
            expression=["slot"],
            params={"slot": slot.fhir_id, "status": slot.status},
        )
    with transaction.atomic():
        lock_occupants(organization=organization, keys={slot.schedule.occupant})
        AuditEvent.objects.create(
            organization=organization,
            actor=actor[:200],
            action=AuditEvent.Action.UNBLOCKED,
            appointment=None,
            appointment_fhir_id=f"Slot/{slot.fhir_id}",
            detail={
                "schedule": slot.schedule.fhir_id,
                "start": iso(slot.start),
                "end": iso(slot.end),
            },
        )
        slot.delete()
