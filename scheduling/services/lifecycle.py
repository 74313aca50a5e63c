"""Changes to an existing appointment by staff or over the API: cancel, mark a no-show."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling import selectors
from scheduling.errors import BusinessRuleViolation, NotFound, gettext_noop
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    Organization,
)
from scheduling.services.claims import cancellation_cutoff_check
from scheduling.services.common import audit, clinic_time
from scheduling.services.idempotency import (
    idempotent_remember,
    idempotent_replay,
    is_key_clash,
    request_hash,
)


def appointment_cancel(
    *,
    organization: Organization,
    appointment: Appointment,
    actor: str,
    reason: str = "",
    by_staff: bool = False,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Appointment:
    """Cancel ``appointment`` (frees its slot at once; ``reason`` becomes its
    cancelationReason). Cancelling a cancelled appointment, or a hold that has lapsed (it
    reads as cancelled), changes nothing and returns it as it is.

    BusinessRuleViolation for a no-show or entered-in-error appointment, and, unless
    ``by_staff`` (the admin: staff may cancel whatever has not ended badly), for one that
    has already started or starts sooner than its schedule's cancellation cutoff. With
    ``idempotency_key`` a repeat of the same request by the same client returns the
    appointment again; the key used for another request is a BusinessRuleViolation.
    """
    digest = request_hash("$cancel", appointment.fhir_id, reason)
    try:
        with transaction.atomic():
            locked = _lock(organization=organization, appointment=appointment)
            if idempotency_key is not None:
                # Under the row lock: a concurrent repeat of this request has committed.
                earlier = idempotent_replay(
                    organization=organization,
                    patient_id=locked.patient_id,
                    actor=actor,
                    key=idempotency_key,
                    request_hash=digest,
                )
                if earlier is not None:
                    return earlier
            now = now or selectors.utc_now()
            changed = _cancel_locked(
                organization=organization,
                locked=locked,
                actor=actor,
                reason=reason,
                by_staff=by_staff,
                now=now,
            )
            if idempotency_key is not None and changed:
                idempotent_remember(
                    organization=organization,
                    appointment=locked,
                    actor=actor,
                    key=idempotency_key,
                    request_hash=digest,
                )
    except IntegrityError as exc:
        # The same key, sent at the same time for another request, won the insert.
        if idempotency_key is not None and is_key_clash(exc):
            idempotent_replay(
                organization=organization,
                patient_id=appointment.patient_id,
                actor=actor,
                key=idempotency_key,
                request_hash=digest,
            )
        raise
    return locked


def _cancel_locked(
    *,
    organization: Organization,
    locked: Appointment,
    actor: str,
    reason: str,
    by_staff: bool,
    now: datetime,
) -> bool:
    """Cancel the row-locked appointment; False when it already reads as cancelled."""
    if locked.status == AppointmentStatus.CANCELLED or locked.hold_lapsed(now):
        return False
    if not locked.is_active:
        raise BusinessRuleViolation(
            gettext_noop("Appointment '%(appointment)s' is %(status)s and cannot be cancelled."),
            expression=["status"],
            params={"appointment": locked.fhir_id, "status": locked.status},
        )
    if not by_staff and locked.start <= now:
        raise BusinessRuleViolation(
            gettext_noop(
                "Appointment '%(appointment)s' started at %(start)s; an appointment that has "
                "started cannot be cancelled (the clinic can still do so)."
            ),
            expression=["start"],
            params={
                "appointment": locked.fhir_id,
                "start": clinic_time(locked.start, organization.zone),
            },
        )
    if not by_staff:
        cancellation_cutoff_check(appointment=locked, now=now, action="cancel", field="start")
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
    return True


def appointment_mark_noshow(
    *, organization: Organization, appointment: Appointment, actor: str
) -> Appointment:
    """Record that the patient did not come. Only an active appointment that has already
    started can be a no-show (BusinessRuleViolation otherwise). Frees the slot."""
    with transaction.atomic():
        locked = _lock(organization=organization, appointment=appointment)
        if not locked.is_active:
            raise BusinessRuleViolation(
                gettext_noop(
                    "Appointment '%(appointment)s' is %(status)s; only an active appointment "
                    "can be marked as a no-show."
                ),
                expression=["status"],
                params={"appointment": locked.fhir_id, "status": locked.status},
            )
        if locked.start > timezone.now():
            raise BusinessRuleViolation(
                gettext_noop(
                    "Appointment '%(appointment)s' has not started yet; it cannot be a no-show."
                ),
                expression=["start"],
                params={"appointment": locked.fhir_id},
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
        raise NotFound(
            gettext_noop("Appointment '%(appointment)s' was not found."),
            params={"appointment": appointment.fhir_id},
        )
    return locked
