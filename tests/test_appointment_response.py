"""AppointmentResponse (docs/api.md section 7): attendance, decline frees the slot, errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B.appointmentresponse import AppointmentResponse as FhirResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome as FhirOperationOutcome
from rest_framework.test import APIClient

from fhir_api.models import ApiClient
from scheduling.models import (
    Appointment,
    AppointmentResponse,
    AuditEvent,
    Organization,
    Patient,
    Schedule,
)
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory

pytestmark = pytest.mark.django_db


def response_url(org_id: str, patient_id: str) -> str:
    return f"/v2/{org_id}/fhir/R4/Patient/{patient_id}/AppointmentResponse"


def book_url(org_id: str, patient_id: str) -> str:
    return f"/v2/{org_id}/fhir/R4/Patient/{patient_id}/Appointment/$book-slot"


def response_body(
    appointment: str, patient_id: str, status: str = "accepted", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "AppointmentResponse",
        "appointment": {"reference": appointment},
        "actor": {"reference": f"Patient/{patient_id}"},
        "participantStatus": status,
        **extra,
    }


def outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    FhirOperationOutcome.model_validate(body)
    assert body["issue"]
    return body


def expressions(body: dict[str, Any]) -> list[str]:
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


def snapshot(appointment: Appointment) -> dict[str, Any]:
    appointment.refresh_from_db()
    return {
        field.name: getattr(appointment, field.attname)
        for field in Appointment._meta.concrete_fields
        if field.name not in ("updated_at",)
    }


@pytest.fixture
def patient(org: Organization) -> Patient:
    return PatientFactory(organization=org, fhir_id="pat-1")


@pytest.fixture
def schedule(org: Organization) -> Schedule:
    return ScheduleFactory(organization=org, fhir_id="sched-1")


@pytest.fixture
def booked(api: APIClient, org: Organization, patient: Patient, schedule: Schedule) -> Appointment:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": schedule.planning_start.isoformat()},
            {"name": "schedule", "valueString": schedule.fhir_id},
            {"name": "practitionerRole", "valueString": schedule.practitioner_role.fhir_id},
            {"name": "status", "valueString": "booked"},
        ],
    }
    response = api.post(book_url(org.id, patient.fhir_id), body, format="json")
    assert response.status_code == 201, response.content
    return Appointment.objects.get(fhir_id=response.json()["id"])


@pytest.mark.parametrize("status", ["accepted", "tentative", "needs-action"])
def test_response_sets_only_the_patient_status(
    api: APIClient, org: Organization, patient: Patient, booked: Appointment, status: str
) -> None:
    before = snapshot(booked)
    response = api.post(
        response_url(org.id, patient.fhir_id),
        response_body(f"Appointment/{booked.fhir_id}", patient.fhir_id, status, comment="ok"),
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    FhirResponse.model_validate(body)
    assert body["participantStatus"] == status
    assert body["appointment"] == {"reference": f"Appointment/{booked.fhir_id}"}
    assert body["actor"] == {"reference": f"Patient/{patient.fhir_id}"}
    assert body["comment"] == "ok"
    assert response["Location"] == (
        f"http://testserver/v2/{org.id}/fhir/R4/Patient/{patient.fhir_id}"
        f"/AppointmentResponse/{body['id']}"
    )
    stored = AppointmentResponse.objects.get(fhir_id=body["id"])
    assert (stored.appointment_id, stored.patient_id, stored.participant_status) == (
        booked.pk,
        patient.pk,
        status,
    )
    after = snapshot(booked)
    assert after.pop("patient_status") == status
    changed = before.pop("patient_status") != status
    # A change is a new version of the appointment (docs/api.md section 15); no change, none.
    assert after.pop("version") == before.pop("version") + int(changed)
    assert after == before
    event = AuditEvent.objects.get(action=AuditEvent.Action.PARTICIPANT_STATUS)
    assert event.detail["patientStatus"] == ["accepted", status]
    assert event.actor == ApiClient.objects.get().client_id


def test_decline_cancels_and_frees_the_slot(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, booked: Appointment
) -> None:
    response = api.post(
        response_url(org.id, patient.fhir_id),
        response_body(f"Appointment/{booked.fhir_id}", patient.fhir_id, "declined"),
        format="json",
    )
    assert response.status_code == 201, response.content
    FhirResponse.model_validate(response.json())
    booked.refresh_from_db()
    assert (booked.status, booked.patient_status) == ("cancelled", "declined")
    actions = set(AuditEvent.objects.filter(appointment=booked).values_list("action", flat=True))
    assert actions == {"created", "participant-status", "cancelled"}

    other = PatientFactory(organization=org, fhir_id="pat-2")
    rebook = api.post(
        book_url(org.id, other.fhir_id),
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDateTime": schedule.planning_start.isoformat()},
                {"name": "schedule", "valueString": schedule.fhir_id},
                {"name": "practitionerRole", "valueString": schedule.practitioner_role.fhir_id},
                {"name": "status", "valueString": "booked"},
            ],
        },
        format="json",
    )
    assert rebook.status_code == 201, rebook.content
    assert rebook.json()["id"] != booked.fhir_id


def test_failed_response_changes_nothing(
    api: APIClient, org: Organization, patient: Patient, booked: Appointment
) -> None:
    before = snapshot(booked)
    outcome(
        api.post(
            response_url(org.id, patient.fhir_id),
            response_body(f"Appointment/{booked.fhir_id}", "someone-else", "declined"),
            format="json",
        ),
        422,
    )
    assert snapshot(booked) == before
    assert AppointmentResponse.objects.count() == 0
    assert AuditEvent.objects.exclude(action="created").count() == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda b: b.update(participantStatus="maybe"), ["AppointmentResponse.participantStatus"]),
        (
            lambda b: b["appointment"].update(reference="Schedule/sched-1"),
            ["AppointmentResponse.appointment.reference"],
        ),
        (
            lambda b: b["appointment"].update(reference="Appointment/"),
            ["AppointmentResponse.appointment.reference"],
        ),
        (
            lambda b: b.update(appointment={"display": "my visit"}),
            ["AppointmentResponse.appointment.reference"],
        ),
        (lambda b: b.pop("appointment"), ["AppointmentResponse.appointment"]),
        (lambda b: b.pop("participantStatus"), ["AppointmentResponse.participantStatus"]),
        (lambda b: b.update(resourceType="Appointment"), ["AppointmentResponse.resourceType"]),
        (lambda b: b.update(start="tomorrow"), ["AppointmentResponse.start"]),
    ],
    ids=[
        "bad-status",
        "wrong-type",
        "empty-id",
        "no-reference",
        "no-appointment",
        "no-status",
        "wrong-resource",
        "bad-start",
    ],
)
def test_malformed_response_is_400(
    api: APIClient,
    org: Organization,
    patient: Patient,
    booked: Appointment,
    change: Callable[[dict[str, Any]], None],
    expected: list[str],
) -> None:
    body = response_body(f"Appointment/{booked.fhir_id}", patient.fhir_id)
    change(body)
    result = outcome(api.post(response_url(org.id, patient.fhir_id), body, format="json"), 400)
    assert expressions(result) == expected
    assert AppointmentResponse.objects.count() == 0


@pytest.mark.parametrize(
    "actor", [{"reference": "Patient/pat-2"}, {"reference": "Practitioner/x"}, None]
)
def test_actor_other_than_the_path_patient_is_422(
    api: APIClient, org: Organization, patient: Patient, booked: Appointment, actor: Any
) -> None:
    PatientFactory(organization=org, fhir_id="pat-2")
    body = response_body(f"Appointment/{booked.fhir_id}", patient.fhir_id)
    if actor is None:
        body.pop("actor")
    else:
        body["actor"] = actor
    result = outcome(api.post(response_url(org.id, patient.fhir_id), body, format="json"), 422)
    assert expressions(result) == ["AppointmentResponse.actor.reference"]


def test_unknown_appointment_is_404(api: APIClient, org: Organization, patient: Patient) -> None:
    body = response_body("Appointment/nope", patient.fhir_id)
    result = outcome(api.post(response_url(org.id, patient.fhir_id), body, format="json"), 404)
    assert expressions(result) == ["AppointmentResponse.appointment"]


def test_another_patients_appointment_is_404(
    api: APIClient, org: Organization, patient: Patient
) -> None:
    theirs = AppointmentFactory(organization=org, fhir_id="theirs")
    before = snapshot(theirs)
    body = response_body("Appointment/theirs", patient.fhir_id, "declined")
    outcome(api.post(response_url(org.id, patient.fhir_id), body, format="json"), 404)
    assert snapshot(theirs) == before


def test_generated_occurrence_is_404_naming_the_parent(
    api: APIClient, org: Organization, patient: Patient
) -> None:
    parent = AppointmentFactory(
        organization=org, patient=patient, fhir_id="weekly", rrule="FREQ=WEEKLY;COUNT=4"
    )
    occurrence = f"weekly-{parent.start + timedelta(weeks=1):%Y%m%dT%H%M%SZ}"
    body = response_body(f"Appointment/{occurrence}", patient.fhir_id)
    result = outcome(api.post(response_url(org.id, patient.fhir_id), body, format="json"), 404)
    assert "Appointment/weekly" in result["issue"][0]["diagnostics"]


def test_outsider_organization_and_patient_are_404(
    api: APIClient, org: Organization, outsider_org: Organization, patient: Patient
) -> None:
    foreign_patient = PatientFactory(organization=outsider_org, fhir_id="pat-b")
    foreign = AppointmentFactory(organization=outsider_org, patient=foreign_patient, fhir_id="f")
    body = response_body("Appointment/f", "pat-b", "declined")
    outcome(api.post(response_url(outsider_org.id, "pat-b"), body, format="json"), 404)
    outcome(api.post(response_url(org.id, "pat-b"), body, format="json"), 404)
    foreign.refresh_from_db()
    assert (foreign.status, foreign.patient_status) == ("booked", "accepted")
    assert AppointmentResponse.objects.count() == 0


def test_patient_app_reaches_only_its_patient(
    org: Organization,
    patient: Patient,
    booked: Appointment,
    make_api_client: Callable[..., tuple[ApiClient, str]],
) -> None:
    PatientFactory(organization=org, fhir_id="pat-2")
    _, token = make_api_client(org, patient_id="pat-2", scopes="patient/AppointmentResponse.c")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = response_body(f"Appointment/{booked.fhir_id}", patient.fhir_id, "declined")
    outcome(client.post(response_url(org.id, patient.fhir_id), body, format="json"), 404)
    booked.refresh_from_db()
    assert booked.status == "booked"


def test_get_is_405(api: APIClient, org: Organization, patient: Patient) -> None:
    outcome(api.get(response_url(org.id, patient.fhir_id)), 405)
