"""Staff actions on an existing appointment: cancel, mark a no-show."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from scheduling.errors import BusinessRuleViolation, NotFound
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    Organization,
)
from scheduling.services.common import audit


def appointment_cancel(
    *, organization: Organization, appointment: Appointment, actor: str, reason: str = ""
) -> Appointment:
    """Cancel ``appointment`` (frees its slot). Cancelling a cancelled one changes nothing;
    a no-show or entered-in-error appointment cannot be cancelled (BusinessRuleViolation)."""
    with transaction.atomic():
        locked = _lock(organization=organization, appointment=appointment)
        if locked.status == AppointmentStatus.CANCELLED:
            return locked
        if not locked.is_active:
            raise BusinessRuleViolation(
                f"Appointment '{locked.fhir_id}' is {locked.status} and cannot be cancelled.",
                expression=["status"],
            )
        old_status = locked.status
        locked.status = AppointmentStatus.CANCELLED
        locked.cancelation_reason = reason[:200]
        locked.save(update_fields=["status", "cancelation_reason", "updated_at"])
        audit(
            organization=organization,
            actor=actor,
            action=AuditEvent.Action.CANCELLED,
            appointment=locked,
            detail={"status": [old_status, locked.status], "reason": reason},
        )
    return locked


def appointment_mark_noshow(
    *, organization: Organization, appointment: Appointment, actor: str
) -> Appointment:
    """Record that the patient did not come. Only an active appointment that has already
    started can be a no-show (BusinessRuleViolation otherwise). Frees the slot."""
    with transaction.atomic():
        locked = _lock(organization=organization, appointment=appointment)
        if not locked.is_active:
            raise BusinessRuleViolation(
                f"Appointment '{locked.fhir_id}' is {locked.status}; only an active "
                "appointment can be marked as a no-show.",
                expression=["status"],
            )
        if locked.start > timezone.now():
            raise BusinessRuleViolation(
                f"Appointment '{locked.fhir_id}' has not started yet; it cannot be a no-show.",
                expression=["start"],
            )
        old_status = locked.status
        locked.status = AppointmentStatus.NOSHOW
        locked.save(update_fields=["status", "updated_at"])
        audit(
            organization=organization,
            actor=actor,
            action=AuditEvent.Action.NOSHOW,
            appointment=locked,
            detail={"status": [old_status, locked.status]},
        )
    return locked


def _lock(*, organization: Organization, appointment: Appointment) -> Appointment:
    locked = (
        Appointment.objects.select_for_update()
        .filter(organization=organization, pk=appointment.pk)
        .first()
    )
    if locked is None:
        raise NotFound(f"Appointment '{appointment.fhir_id}' was not found.")
    return locked
