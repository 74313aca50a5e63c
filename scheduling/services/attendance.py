"""The patient answers an appointment (AppointmentResponse): accept, decline, tentative."""

from __future__ import annotations

from django.db import transaction

from scheduling import recurrence
from scheduling.errors import InvalidInput, NotFound
from scheduling.models import (
    Appointment,
    AppointmentResponse,
    AppointmentStatus,
    AuditEvent,
    Organization,
    ParticipationStatus,
    Patient,
)
from scheduling.services.common import audit, new_fhir_id


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
    appointment changes. Raises NotFound for an appointment that is not this patient's and
    InvalidInput for an unknown participant status.
    """
    if participant_status not in ParticipationStatus.values:
        allowed = ", ".join(ParticipationStatus.values)
        raise InvalidInput(
            f"participantStatus '{participant_status}' is not one of: {allowed}.",
            expression=["participantStatus"],
        )
    with transaction.atomic():
        appointment = (
            Appointment.objects.select_for_update()
            .filter(organization=organization, patient=patient, fhir_id=appointment_fhir_id)
            .first()
        )
        if appointment is None:
            raise NotFound(
                _appointment_missing_message(organization, appointment_fhir_id),
                expression=["appointment"],
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


def _appointment_missing_message(organization: Organization, fhir_id: str) -> str:
    parsed = recurrence.split_occurrence_id(fhir_id)
    if parsed is not None:
        parent_id = parsed[0]
        if Appointment.objects.filter(organization=organization, fhir_id=parent_id).exists():
            return (
                f"Appointment '{fhir_id}' is a generated occurrence of Appointment/{parent_id}; "
                "only stored appointments can be answered."
            )
    return f"Appointment '{fhir_id}' was not found for this patient."
