"""The patient answers an appointment (AppointmentResponse): accept, decline, tentative."""

from __future__ import annotations

from datetime import UTC, timedelta

from django.db import transaction

from scheduling import recurrence, selectors
from scheduling.errors import InvalidInput, NotFound, gettext_noop
from scheduling.models import (
    Appointment,
    AppointmentResponse,
    AppointmentStatus,
    AuditEvent,
    Organization,
    ParticipationStatus,
    Patient,
)
from scheduling.recurrence import Period
from scheduling.services.claims import cancellation_cutoff_check
from scheduling.services.common import audit, new_fhir_id

_STATUS_FIELD = "participantStatus"


def appointment_respond(
    *,
    organization: Organization,
    patient: Patient,
    appointment_fhir_id: str,
    participant_status: str,
    comment: str,
    actor: str,
) -> AppointmentResponse:
    """Store the patient's AppointmentResponse and set their participation status.

    ``declined`` also cancels the appointment, which frees its slot; nothing else of the
    appointment changes. ``appointment_fhir_id`` may also name a generated occurrence of
    one of the patient's recurring appointments: ``declined`` then leaves out that one
    occurrence (an exdate of the parent), and any other status is stored and changes
    nothing. Raises NotFound for an appointment that is not this patient's and InvalidInput
    for an unknown participant status.
    """
    if participant_status not in ParticipationStatus.values:
        allowed = ", ".join(ParticipationStatus.values)
        raise InvalidInput(
            gettext_noop("participantStatus '%(status)s' is not one of: %(allowed)s."),
            expression=[_STATUS_FIELD],
            params={"status": participant_status, "allowed": allowed},
        )
    with transaction.atomic():
        appointment = (
            Appointment.objects.select_for_update()
            .filter(organization=organization, patient=patient, fhir_id=appointment_fhir_id)
            .first()
        )
        if appointment is None:
            parent, occurrence = _locked_occurrence(
                organization=organization, patient=patient, fhir_id=appointment_fhir_id
            )
            return _respond_to_occurrence(
                organization=organization,
                patient=patient,
                parent=parent,
                occurrence=occurrence,
                participant_status=participant_status,
                comment=comment,
                actor=actor,
            )
        if participant_status == ParticipationStatus.DECLINED and appointment.is_active:
            cancellation_cutoff_check(
                appointment=appointment,
                now=selectors.utc_now(),
                action="decline",
                field=_STATUS_FIELD,
            )
        response = AppointmentResponse(
            organization=organization,
            fhir_id=new_fhir_id(),
            appointment=appointment,
            patient=patient,
            participant_status=participant_status,
            comment=comment or "",
            client_id=actor[:100],
        )
        response.save()

        changed: list[str] = []
        old_patient_status = appointment.patient_status
        if old_patient_status != participant_status:
            appointment.patient_status = participant_status
            changed.append("patient_status")
        audit(
            organization=organization,
            actor=actor,
            action=AuditEvent.Action.PARTICIPANT_STATUS,
            appointment=appointment,
            detail={
                "patient": patient.fhir_id,
                "patientStatus": [old_patient_status, participant_status],
                "appointmentResponse": response.fhir_id,
            },
        )
        if participant_status == ParticipationStatus.DECLINED and appointment.is_active:
            old_status = appointment.status
            appointment.status = AppointmentStatus.CANCELLED
            changed.append("status")
            audit(
                organization=organization,
                actor=actor,
                action=AuditEvent.Action.CANCELLED,
                appointment=appointment,
                detail={
                    "status": [old_status, AppointmentStatus.CANCELLED.value],
                    "reason": "declined by the patient",
                    "appointmentResponse": response.fhir_id,
                },
            )
        if changed:
            appointment.save(update_fields=[*changed, "updated_at"])
    return response


def _locked_occurrence(
    *, organization: Organization, patient: Patient, fhir_id: str
) -> tuple[Appointment, Period]:
    """The patient's recurring appointment (row-locked) and its occurrence named by
    ``fhir_id``; NotFound otherwise.

    Another patient's appointment answers exactly like an id that does not exist: its
    existence is not this caller's to learn.
    """
    not_found = NotFound(
        gettext_noop("Appointment '%(appointment)s' was not found for this patient."),
        expression=["appointment"],
        params={"appointment": fhir_id},
    )
    parsed = recurrence.split_occurrence_id(fhir_id)
    if parsed is None:
        raise not_found
    parent_id, start = parsed
    parent = (
        Appointment.objects.select_for_update()
        .filter(organization=organization, patient=patient, fhir_id=parent_id)
        .exclude(rrule="")
        .first()
    )
    if parent is None:
        raise not_found
    periods = recurrence.expand(
        rrule=parent.rrule,
        first_start=parent.start,
        first_end=parent.end,
        tzid=parent.rule_timezone(organization),
        exdates=parent.exdate_values(),
        window_start=start,
        window_end=start + timedelta(seconds=1),
    )
    for period in periods:
        if period.start.replace(microsecond=0) == start:
            return parent, period
    raise NotFound(
        gettext_noop(
            "Appointment '%(appointment)s' is not an occurrence of Appointment/%(parent)s: no "
            "occurrence of it starts then (or it was left out); search "
            "Appointment?_id=%(parent)s&date=... for its occurrences."
        ),
        expression=["appointment"],
        params={"appointment": fhir_id, "parent": parent_id},
    )


def _respond_to_occurrence(
    *,
    organization: Organization,
    patient: Patient,
    parent: Appointment,
    occurrence: Period,
    participant_status: str,
    comment: str,
    actor: str,
) -> AppointmentResponse:
    declines = participant_status == ParticipationStatus.DECLINED and parent.is_active
    if declines:
        cancellation_cutoff_check(
            appointment=parent,
            now=selectors.utc_now(),
            action="decline",
            field=_STATUS_FIELD,
            occurrence=(
                recurrence.occurrence_id(parent.fhir_id, occurrence.start),
                occurrence.start,
            ),
        )
    # start/end name the occurrence answered (the mapper refers to it by its own id); the
    # parent's participation status is the series', so an occurrence leaves it alone.
    response = AppointmentResponse(
        organization=organization,
        fhir_id=new_fhir_id(),
        appointment=parent,
        patient=patient,
        participant_status=participant_status,
        comment=comment or "",
        client_id=actor[:100],
        start=occurrence.start,
        end=occurrence.end,
    )
    response.save()
    if declines:
        exdate = occurrence.start.astimezone(UTC).isoformat()
        parent.exdates = [*(parent.exdates or []), exdate]
        parent.save(update_fields=["exdates", "updated_at"])
        audit(
            organization=organization,
            actor=actor,
            action=AuditEvent.Action.CANCELLED,
            appointment=parent,
            detail={
                "occurrence": recurrence.occurrence_id(parent.fhir_id, occurrence.start),
                "exdate": exdate,
                "reason": "occurrence declined by the patient",
                "appointmentResponse": response.fhir_id,
            },
        )
    return response
