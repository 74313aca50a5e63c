"""Storing an appointment as given: import and staff edits, through the same engine.

``$book-slot`` books a slot of a schedule's grid; an import or a member of staff may store
an appointment as it is (off the grid, in the past, recurring). Either way it must not
double-book its practitioner or its patient: :func:`appointment_store` locks both, asks
the engine what the appointment would overlap (``claims.appointment_clashes``), refuses
with the clash named, and writes the AuditEvent in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from scheduling.errors import SlotTaken, gettext_noop
from scheduling.models import Appointment, Organization
from scheduling.selectors.common import utc_now
from scheduling.services.claims import (
    appointment_clashes,
    expire_lapsed_holds,
    integrity_conflict,
    lock_occupants,
)
from scheduling.services.common import audit

__all__ = ["appointment_store"]


def appointment_store(
    *,
    organization: Organization,
    appointment: Appointment,
    actor: str,
    action: str,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
    field: str = "start",
) -> Appointment:
    """Save ``appointment`` (new or changed) unless it would overlap another active
    appointment of its practitioner or patient: SlotTaken then, naming both appointments,
    and nothing is written. Writes an AuditEvent with ``action``."""
    now = now or utc_now()
    appointment.occupant = appointment.resolve_occupant()
    with transaction.atomic():
        lock_occupants(
            organization=organization,
            keys={appointment.occupant, f"patient:{appointment.patient_id}"},
        )
        if appointment.is_active and not appointment.hold_lapsed(now):
            if not appointment.rrule:
                expire_lapsed_holds(
                    organization=organization,
                    now=now,
                    actor=actor,
                    occupant=appointment.occupant or None,
                    patient=appointment.patient,
                    start=appointment.start,
                    end=appointment.end,
                )
            clashes = appointment_clashes(
                organization=organization, appointment=appointment, now=now
            )
            if clashes:
                raise SlotTaken(
                    gettext_noop("Appointment/%(appointment)s would double-book: %(clashes)s."),
                    expression=[field],
                    params={"appointment": appointment.fhir_id, "clashes": clashes},
                )
        try:
            with transaction.atomic():
                appointment.save()
        except IntegrityError as exc:
            if integrity_conflict(exc):
                raise SlotTaken(
                    gettext_noop(
                        "Appointment/%(appointment)s would double-book its practitioner or "
                        "patient (refused by the database)."
                    ),
                    expression=[field],
                    params={"appointment": appointment.fhir_id},
                ) from None
            raise
        audit(
            organization=organization,
            actor=actor,
            action=action,
            appointment=appointment,
            detail=detail or {"status": appointment.status, "start": appointment.start.isoformat()},
        )
    return appointment
