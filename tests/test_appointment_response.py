"""AppointmentResponse (docs/api.md section 7): attendance, decline frees the slot, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.appointmentresponse import AppointmentResponse as FhirResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome as FhirOperationOutcome
from fhirclient.models.appointmentresponse import AppointmentResponse as FCResponse
from fhirpy import SyncFHIRClient
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


@pytest.fixture
def weekly(org: Organization, patient: Patient) -> Appointment:
    """A weekly appointment of the patient (four occurrences) on a weekly schedule of the
    same practitioner, so each occurrence occupies a slot of that schedule."""
    schedule = ScheduleFactory(organization=org, fhir_id="weekly-sched", rrule="FREQ=WEEKLY")
    return AppointmentFactory(
        organization=org,
        patient=patient,
        fhir_id="weekly",
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        start=schedule.planning_start,
        end=schedule.planning_start + timedelta(minutes=15),
        rrule="FREQ=WEEKLY;COUNT=4",
    )


def occurrence_of(parent: Appointment, week: int) -> tuple[str, datetime]:
    start = parent.start + timedelta(weeks=week)
    return f"{parent.fhir_id}-{start.astimezone(UTC):%Y%m%dT%H%M%SZ}", start


def slot_status_at(org: Organization, schedule: Schedule, start: datetime) -> str:
    from scheduling import selectors
    from scheduling.recurrence import Period

    results = selectors.slot_search(
        organization=org,
        window=Period(start, start + timedelta(minutes=15)),
        schedule_ids=[schedule.fhir_id],
        now=datetime.now(UTC),
    )
    return next(str(r.status) for r in results if r.start == start)


def occurrence_ids(
    api: APIClient, org: Organization, patient: Patient, parent: Appointment
) -> list[str]:
    window = f"ge{(parent.start - timedelta(days=1)).date()}"
    data = api.get(
        f"/v2/{org.id}/fhir/R4/Patient/{patient.fhir_id}/Appointment",
        {
            "_id": parent.fhir_id,
            "date": [window, f"le{(parent.start + timedelta(weeks=5)).date()}"],
        },
    ).json()
    return [entry["resource"]["id"] for entry in data.get("entry", [])]


def test_declining_one_occurrence_leaves_it_out_and_frees_its_time(
    api: APIClient, org: Organization, patient: Patient, weekly: Appointment
) -> None:
    occurrence, start = occurrence_of(weekly, 1)
    schedule = weekly.schedule
    assert schedule is not None
    assert slot_status_at(org, schedule, start) == "busy"
    before = occurrence_ids(api, org, patient, weekly)
    assert occurrence in before and len(before) == 4

    response = api.post(
        response_url(org.id, patient.fhir_id),
        response_body(f"Appointment/{occurrence}", patient.fhir_id, "declined"),
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    FhirResponse.model_validate(body)
    FCResponse(body)
    parsed = SyncFHIRClient("http://testserver").resource("AppointmentResponse", **body)
    assert parsed["appointment"]["reference"] == f"Appointment/{occurrence}"
    assert body["appointment"] == {"reference": f"Appointment/{occurrence}"}
    assert datetime.fromisoformat(body["start"]) == start

    weekly.refresh_from_db()
    assert weekly.status == "booked" and weekly.patient_status == "accepted"
    assert [d == start for d in weekly.exdate_values()] == [True]
    assert occurrence_ids(api, org, patient, weekly) == [i for i in before if i != occurrence]
    assert slot_status_at(org, schedule, start) == "free"
    assert slot_status_at(org, schedule, start + timedelta(weeks=1)) == "busy"
    event = AuditEvent.objects.get(appointment=weekly, action="cancelled")
    assert event.detail["occurrence"] == occurrence
    # Declined once, it is gone: answering it again is answering an unknown occurrence.
    again = api.post(
        response_url(org.id, patient.fhir_id),
        response_body(f"Appointment/{occurrence}", patient.fhir_id, "declined"),
        format="json",
    )
    assert "not an occurrence" in outcome(again, 404)["issue"][0]["diagnostics"]


@pytest.mark.parametrize("status", ["accepted", "tentative", "needs-action"])
def test_other_answers_on_an_occurrence_are_stored_and_change_nothing(
    api: APIClient, org: Organization, patient: Patient, weekly: Appointment, status: str
) -> None:
    occurrence, start = occurrence_of(weekly, 2)
    before = snapshot(weekly)
    events = AuditEvent.objects.count()
    response = api.post(
        response_url(org.id, patient.fhir_id),
        response_body(f"Appointment/{occurrence}", patient.fhir_id, status),
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["appointment"] == {"reference": f"Appointment/{occurrence}"}
    stored = AppointmentResponse.objects.get()
    assert (stored.appointment_id, stored.participant_status, stored.start) == (
        weekly.pk,
        status,
        start,
    )
    assert snapshot(weekly) == before
    assert AuditEvent.objects.count() == events


def test_an_id_between_occurrences_is_404_naming_the_parent(
    api: APIClient, org: Organization, patient: Patient, weekly: Appointment
) -> None:
    between = f"weekly-{weekly.start + timedelta(days=3):%Y%m%dT%H%M%SZ}"
    after_the_end, _ = occurrence_of(weekly, 4)
    before = snapshot(weekly)
    for target in (between, after_the_end):
        body = response_body(f"Appointment/{target}", patient.fhir_id, "declined")
        result = outcome(api.post(response_url(org.id, patient.fhir_id), body, format="json"), 404)
        assert "Appointment/weekly" in result["issue"][0]["diagnostics"]
        assert expressions(result) == ["AppointmentResponse.appointment"]
    assert snapshot(weekly) == before
    assert AppointmentResponse.objects.count() == 0


def test_another_patients_occurrence_answers_like_an_unknown_id(
    api: APIClient, org: Organization, patient: Patient, weekly: Appointment
) -> None:
    other = PatientFactory(organization=org, fhir_id="pat-2")
    occurrence, _ = occurrence_of(weekly, 1)
    unknown = f"nosuch-{occurrence.rpartition('-')[2]}"
    before = snapshot(weekly)

    def answer(target: str) -> dict[str, Any]:
        body = response_body(f"Appointment/{target}", other.fhir_id, "declined")
        return outcome(api.post(response_url(org.id, other.fhir_id), body, format="json"), 404)

    theirs, missing = answer(occurrence), answer(unknown)
    assert json.dumps(theirs).replace(occurrence, "X") == json.dumps(missing).replace(unknown, "X")
    assert "parent" not in json.dumps(theirs) and "occurrence" not in json.dumps(theirs)
    assert "Appointment/weekly" not in json.dumps(theirs)
    assert snapshot(weekly) == before


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


def test_declining_within_the_cancellation_cutoff_is_422_and_stores_nothing(
    api: APIClient, org: Organization, patient: Patient
) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    schedule = ScheduleFactory(
        organization=org,
        fhir_id="strict",
        planning_start=soon,
        planning_end=soon + timedelta(hours=1),
        rrule="FREQ=DAILY",
        cancellation_cutoff_hours=48,
    )
    single = AppointmentFactory(
        organization=org,
        patient=patient,
        schedule=schedule,
        fhir_id="single",
        start=soon,
        end=soon + timedelta(minutes=15),
    )
    daily = AppointmentFactory(
        organization=org,
        patient=patient,
        schedule=schedule,
        fhir_id="daily",
        start=soon + timedelta(minutes=30),
        end=soon + timedelta(minutes=45),
        rrule="FREQ=DAILY;COUNT=5",
    )
    before = (snapshot(single), snapshot(daily))
    tomorrow, _ = occurrence_of_days(daily, 1)
    for target in ("single", daily.fhir_id, tomorrow):
        body = response_body(f"Appointment/{target}", patient.fhir_id, "declined")
        result = outcome(api.post(response_url(org.id, patient.fhir_id), body, format="json"), 422)
        assert "cancellationCutoff" in result["issue"][0]["diagnostics"]
        assert expressions(result) == ["AppointmentResponse.participantStatus"]
    assert (snapshot(single), snapshot(daily)) == before
    assert AppointmentResponse.objects.count() == 0
    # Accepting is not cancelling: no cutoff. A far occurrence may still be declined.
    accept = response_body("Appointment/single", patient.fhir_id, "accepted")
    assert api.post(response_url(org.id, patient.fhir_id), accept, format="json").status_code == 201
    later, _ = occurrence_of_days(daily, 3)
    body = response_body(f"Appointment/{later}", patient.fhir_id, "declined")
    assert api.post(response_url(org.id, patient.fhir_id), body, format="json").status_code == 201
    daily.refresh_from_db()
    assert len(daily.exdates) == 1


def occurrence_of_days(parent: Appointment, days: int) -> tuple[str, datetime]:
    start = parent.start + timedelta(days=days)
    return f"{parent.fhir_id}-{start.astimezone(UTC):%Y%m%dT%H%M%SZ}", start
