"""$book-slot (docs/api.md section 6): success, every error path, idempotency, tenancy, audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.operationoutcome import OperationOutcome as FhirOperationOutcome
from rest_framework.test import APIClient

from fhir_api.models import ApiClient
from scheduling import services
from scheduling.errors import BusinessRuleViolation, NotFound, SlotTaken
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    IdempotencyKey,
    Organization,
    Patient,
    Schedule,
    SlotStatus,
)
from scheduling.services import booking as booking_service
from scheduling.services import claims
from tests.factories import (
    AppointmentFactory,
    PatientFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
    SlotFactory,
)

pytestmark = pytest.mark.django_db


def book_url(org_id: str, patient_id: str) -> str:
    return f"/v2/{org_id}/fhir/R4/Patient/{patient_id}/Appointment/$book-slot"


def book_body(
    schedule: Schedule,
    start: datetime,
    *,
    status: str = "booked",
    role: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "start", "valueDateTime": start.isoformat()},
        {"name": "schedule", "valueString": schedule.fhir_id},
        {
            "name": "practitionerRole",
            "valueString": role if role is not None else schedule.practitioner_role.fhir_id,
        },
        {"name": "status", "valueString": status},
    ]
    if comment is not None:
        parameters.append({"name": "comment", "valueString": comment})
    return {"resourceType": "Parameters", "parameter": parameters}


def post(api: APIClient, url: str, body: Any, **headers: str) -> Any:
    return api.post(url, body, format="json", **headers)


def outcome(response: Any, status: int) -> dict[str, Any]:
    """The response's OperationOutcome, after checking status, media type and R4B validity."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    FhirOperationOutcome.model_validate(body)
    assert body["issue"], body
    return body


def expressions(body: dict[str, Any]) -> list[str]:
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


def db_state() -> tuple[int, int, int]:
    return (
        Appointment.objects.count(),
        AuditEvent.objects.count(),
        IdempotencyKey.objects.count(),
    )


@pytest.fixture
def patient(org: Organization) -> Patient:
    return PatientFactory(organization=org, fhir_id="pat-1")


@pytest.fixture
def schedule(org: Organization) -> Schedule:
    return ScheduleFactory(organization=org, fhir_id="sched-1")


# --------------------------------------------------------------------------- success


def test_book_generated_slot(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    start = schedule.planning_start + timedelta(minutes=30)
    response = post(
        api, book_url(org.id, patient.fhir_id), book_body(schedule, start, comment="Back pain")
    )

    assert response.status_code == 201, response.content
    body = response.json()
    FhirAppointment.model_validate(body)
    assert response["Location"] == (
        f"http://testserver/v2/{org.id}/fhir/R4/Patient/{patient.fhir_id}/Appointment/{body['id']}"
    )
    assert body["status"] == "booked"
    assert body["start"] == start.astimezone(UTC).isoformat()
    assert body["end"] == (start + timedelta(minutes=15)).astimezone(UTC).isoformat()
    assert body["comment"] == "Back pain"
    actors = {p["actor"]["reference"]: p["status"] for p in body["participant"]}
    assert actors == {
        f"Patient/{patient.fhir_id}": "accepted",
        f"PractitionerRole/{schedule.practitioner_role.fhir_id}": "accepted",
    }
    assert body["serviceCategory"][0]["coding"][0]["code"] == "gp"

    stored = Appointment.objects.get(fhir_id=body["id"])
    assert (stored.organization_id, stored.patient_id, stored.schedule_id) == (
        org.id,
        patient.pk,
        schedule.pk,
    )
    assert stored.slot is None
    audit = AuditEvent.objects.get(appointment=stored)
    assert audit.action == AuditEvent.Action.CREATED
    assert audit.detail["start"] == start.astimezone(UTC).isoformat()
    assert audit.actor == ApiClient.objects.get().client_id


def test_pending_booking_leaves_practitioner_needs_action(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    response = post(
        api,
        book_url(org.id, patient.fhir_id),
        book_body(
            schedule,
            schedule.planning_start,
            status="pending",
            role=f"PractitionerRole/{schedule.practitioner_role.fhir_id}",
        ),
    )
    assert response.status_code == 201, response.content
    stored = Appointment.objects.get()
    assert stored.status == "pending"
    assert stored.practitioner_status == "needs-action"
    assert stored.patient_status == "accepted"


def test_offset_of_start_does_not_matter(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    start = (schedule.planning_start + timedelta(minutes=45)).astimezone(org.zone)
    response = post(api, book_url(org.id, patient.fhir_id), book_body(schedule, start))
    assert response.status_code == 201, response.content
    assert Appointment.objects.get().start == start


def test_book_occurrence_of_recurring_schedule(
    api: APIClient, org: Organization, patient: Patient
) -> None:
    schedule = ScheduleFactory(organization=org, fhir_id="weekly", rrule="FREQ=WEEKLY;COUNT=10")
    third = schedule.planning_start + timedelta(weeks=2)
    occurrence = f"weekly-{third:%Y%m%dT%H%M%SZ}"
    body = book_body(schedule, third + timedelta(minutes=15))
    body["parameter"][1]["valueString"] = occurrence

    response = post(api, book_url(org.id, patient.fhir_id), body)

    assert response.status_code == 201, response.content
    stored = Appointment.objects.get()
    assert stored.schedule == schedule  # the stored parent, not the occurrence
    assert stored.start == third + timedelta(minutes=15)


def test_occurrence_id_must_contain_the_start(
    api: APIClient, org: Organization, patient: Patient
) -> None:
    schedule = ScheduleFactory(organization=org, fhir_id="weekly", rrule="FREQ=WEEKLY;COUNT=10")
    second = schedule.planning_start + timedelta(weeks=1)
    body = book_body(schedule, schedule.planning_start + timedelta(weeks=2))
    body["parameter"][1]["valueString"] = f"weekly-{second:%Y%m%dT%H%M%SZ}"
    body_ = outcome(post(api, book_url(org.id, patient.fhir_id), body), 422)
    assert expressions(body_) == ["Parameters.parameter[start]"]


def test_book_stored_slot(api: APIClient, org: Organization, patient: Patient) -> None:
    schedule = ScheduleFactory(organization=org, fhir_id="no-grid", slot_minutes=None)
    slot = SlotFactory(
        organization=org,
        schedule=schedule,
        fhir_id="slot-x",
        start=schedule.planning_start + timedelta(minutes=10),
        end=schedule.planning_start + timedelta(minutes=40),
    )
    response = post(api, book_url(org.id, patient.fhir_id), book_body(schedule, slot.start))
    assert response.status_code == 201, response.content
    body = response.json()
    FhirAppointment.model_validate(body)
    assert body["slot"] == [{"reference": "Slot/slot-x"}]
    assert Appointment.objects.get().end == slot.end


# --------------------------------------------------------------------------- conflicts


def test_second_booking_of_a_slot_is_409_and_changes_nothing(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    url = book_url(org.id, patient.fhir_id)
    assert post(api, url, book_body(schedule, schedule.planning_start)).status_code == 201
    before = db_state()
    other = PatientFactory(organization=org, fhir_id="pat-2")

    body = outcome(
        post(api, book_url(org.id, other.fhir_id), book_body(schedule, schedule.planning_start)),
        409,
    )

    assert body["issue"][0]["code"] == "conflict"
    assert db_state() == before


def test_overlapping_stored_appointment_makes_slot_taken(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    # A 30-minute appointment starting at 09:00 also covers the 09:15 slot.
    AppointmentFactory(
        organization=org,
        patient=patient,
        schedule=schedule,
        start=schedule.planning_start,
        end=schedule.planning_start + timedelta(minutes=30),
    )
    start = schedule.planning_start + timedelta(minutes=15)
    outcome(post(api, book_url(org.id, patient.fhir_id), book_body(schedule, start)), 409)


def test_busy_unavailable_slot_is_409(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    SlotFactory(
        organization=org,
        schedule=schedule,
        status=SlotStatus.BUSY_UNAVAILABLE,
        start=schedule.planning_start,
        end=schedule.planning_start + timedelta(hours=1),
    )
    start = schedule.planning_start + timedelta(minutes=30)
    before = db_state()
    outcome(post(api, book_url(org.id, patient.fhir_id), book_body(schedule, start)), 409)
    assert db_state() == before


@pytest.mark.parametrize("inactive", ["cancelled", "noshow", "entered-in-error"])
def test_inactive_appointment_does_not_hold_the_slot(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, inactive: str
) -> None:
    AppointmentFactory(
        organization=org,
        patient=patient,
        schedule=schedule,
        start=schedule.planning_start,
        status=inactive,
    )
    response = post(
        api, book_url(org.id, patient.fhir_id), book_body(schedule, schedule.planning_start)
    )
    assert response.status_code == 201, response.content


def test_database_constraint_catches_what_the_check_misses(
    org: Organization, patient: Patient, schedule: Schedule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with the availability check switched off, the unique constraint refuses a
    second active appointment for the slot, and the service reports SlotTaken."""
    monkeypatch.setattr(booking_service, "_refuse_early", lambda **_: None)
    monkeypatch.setattr(claims, "slot_claim", lambda **_: None)
    kwargs: dict[str, Any] = {
        "organization": org,
        "patient": patient,
        "schedule_id": schedule.fhir_id,
        "start": schedule.planning_start,
        "practitioner_role_id": schedule.practitioner_role.fhir_id,
        "status": "booked",
        "comment": "",
        "actor": "svc",
    }
    services.appointment_book(**kwargs)
    with pytest.raises(SlotTaken):
        services.appointment_book(**kwargs)
    assert Appointment.objects.count() == 1
    assert AuditEvent.objects.count() == 1


# --------------------------------------------------------------------------- 422 rules


def _shift(schedule: Schedule, **delta: Any) -> datetime:
    return schedule.planning_start + timedelta(**delta)


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (
            lambda b, s: b["parameter"][1].update(valueString="nope"),
            "Parameters.parameter[schedule]",
        ),
        (
            lambda b, s: b["parameter"][2].update(valueString="role-other"),
            "Parameters.parameter[practitionerRole]",
        ),
        (
            lambda b, s: b["parameter"][3].update(valueString="arrived"),
            "Parameters.parameter[status]",
        ),
        (
            lambda b, s: b["parameter"][3].update(valueString="whatever"),
            "Parameters.parameter[status]",
        ),
        # Not on the 15-minute grid of the window.
        (
            lambda b, s: b["parameter"][0].update(valueDateTime=_shift(s, minutes=5).isoformat()),
            "Parameters.parameter[start]",
        ),
        # Last slot would end after the window (09:00-12:00 UTC window, 11:50 start).
        (
            lambda b, s: b["parameter"][0].update(valueDateTime=_shift(s, minutes=170).isoformat()),
            "Parameters.parameter[start]",
        ),
        # Outside the window altogether.
        (
            lambda b, s: b["parameter"][0].update(valueDateTime=_shift(s, days=1).isoformat()),
            "Parameters.parameter[start]",
        ),
    ],
    ids=[
        "unknown-schedule",
        "wrong-role",
        "status-arrived",
        "status-unknown",
        "off-grid",
        "overruns-window",
        "outside-window",
    ],
)
def test_business_rule_violations_are_422(
    api: APIClient,
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    change: Callable[[dict[str, Any], Schedule], None],
    expression: str,
) -> None:
    PractitionerRoleFactory(organization=org, fhir_id="role-other")
    body = book_body(schedule, schedule.planning_start)
    change(body, schedule)
    before = db_state()

    result = outcome(post(api, book_url(org.id, patient.fhir_id), body), 422)

    assert expressions(result) == [expression]
    assert result["issue"][0]["code"] == "business-rule"
    assert db_state() == before


def test_inactive_schedule_is_422(api: APIClient, org: Organization, patient: Patient) -> None:
    schedule = ScheduleFactory(organization=org, active=False)
    result = outcome(
        post(api, book_url(org.id, patient.fhir_id), book_body(schedule, schedule.planning_start)),
        422,
    )
    assert expressions(result) == ["Parameters.parameter[schedule]"]
    assert "not active" in result["issue"][0]["diagnostics"]


def test_schedule_of_another_organization_is_unknown(
    api: APIClient, org: Organization, outsider_org: Organization, patient: Patient
) -> None:
    foreign = ScheduleFactory(organization=outsider_org, fhir_id="foreign")
    result = outcome(
        post(api, book_url(org.id, patient.fhir_id), book_body(foreign, foreign.planning_start)),
        422,
    )
    assert expressions(result) == ["Parameters.parameter[schedule]"]


def test_slot_in_the_past_is_422(api: APIClient, org: Organization, patient: Patient) -> None:
    start = (timezone.now() - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    schedule = ScheduleFactory(
        organization=org, planning_start=start, planning_end=start + timedelta(hours=2)
    )
    result = outcome(post(api, book_url(org.id, patient.fhir_id), book_body(schedule, start)), 422)
    assert expressions(result) == ["Parameters.parameter[start]"]
    assert "started" in result["issue"][0]["diagnostics"]


# --------------------------------------------------------------------------- 400 input


def _without(name: str) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body["parameter"] = [p for p in body["parameter"] if p["name"] != name]

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_without("start"), ["Parameters.parameter[start]"]),
        (_without("schedule"), ["Parameters.parameter[schedule]"]),
        (_without("practitionerRole"), ["Parameters.parameter[practitionerRole]"]),
        (_without("status"), ["Parameters.parameter[status]"]),
        # Naive date-time: rejected by the R4B model itself, named by position and name.
        (
            lambda b: b["parameter"][0].update(valueDateTime="2030-06-03T09:00:00"),
            ["Parameters.parameter[0].valueDateTime", "Parameters.parameter[start]"],
        ),
        (
            lambda b: b["parameter"][0].update(valueDateTime="2030-06-03"),
            ["Parameters.parameter[start]"],
        ),
        (
            lambda b: b["parameter"][0].update(valueDateTime="soon"),
            ["Parameters.parameter[0].valueDateTime", "Parameters.parameter[start]"],
        ),
        (
            lambda b: b["parameter"].__setitem__(
                0, {"name": "start", "valueString": "2030-06-03T09:00:00Z"}
            ),
            ["Parameters.parameter[start]"],
        ),
        (
            lambda b: b["parameter"].append(dict(b["parameter"][3])),
            ["Parameters.parameter[status]"],
        ),
        (
            lambda b: b["parameter"].append({"name": "colour", "valueString": "red"}),
            ["Parameters.parameter[colour]"],
        ),
        (
            lambda b: b["parameter"][2].update(valueString="Practitioner/x"),
            ["Parameters.parameter[practitionerRole]"],
        ),
        (
            lambda b: b["parameter"][3].update(valueCode="booked"),
            ["Parameters.parameter[3]", "Parameters.parameter[status]"],
        ),
        (lambda b: b.update(resourceType="Bundle"), ["Parameters.resourceType"]),
        (lambda b: b.pop("resourceType"), ["Parameters.resourceType"]),
        (lambda b: b.update(parameter="start"), ["Parameters.parameter"]),
    ],
    ids=[
        "no-start",
        "no-schedule",
        "no-role",
        "no-status",
        "naive-start",
        "date-only-start",
        "garbage-start",
        "start-as-string",
        "duplicate-status",
        "unknown-parameter",
        "role-wrong-type",
        "two-values",
        "wrong-resource",
        "no-resource-type",
        "parameter-not-a-list",
    ],
)
def test_malformed_parameters_are_400(
    api: APIClient,
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    change: Callable[[dict[str, Any]], None],
    expected: list[str],
) -> None:
    body = book_body(schedule, schedule.planning_start)
    change(body)
    before = db_state()
    result = outcome(post(api, book_url(org.id, patient.fhir_id), body), 400)
    assert expressions(result) == expected
    assert db_state() == before


def test_every_missing_parameter_is_its_own_issue(
    api: APIClient, org: Organization, patient: Patient
) -> None:
    result = outcome(
        post(api, book_url(org.id, patient.fhir_id), {"resourceType": "Parameters"}), 400
    )
    assert expressions(result) == [
        "Parameters.parameter[start]",
        "Parameters.parameter[schedule]",
        "Parameters.parameter[practitionerRole]",
        "Parameters.parameter[status]",
    ]
    assert {issue["code"] for issue in result["issue"]} == {"required"}


def test_body_that_is_not_json_is_400(api: APIClient, org: Organization, patient: Patient) -> None:
    response = api.post(
        book_url(org.id, patient.fhir_id), b"{not json", content_type="application/fhir+json"
    )
    outcome(response, 400)


def test_get_on_book_slot_is_405(api: APIClient, org: Organization, patient: Patient) -> None:
    outcome(api.get(book_url(org.id, patient.fhir_id)), 405)


# --------------------------------------------------------------------------- idempotency


def test_idempotent_retry_returns_the_same_booking(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    url = book_url(org.id, patient.fhir_id)
    body = book_body(schedule, schedule.planning_start)
    first = post(api, url, body, HTTP_IDEMPOTENCY_KEY="key-1")
    assert first.status_code == 201, first.content
    state = db_state()

    again = post(api, url, body, HTTP_IDEMPOTENCY_KEY="key-1")

    assert again.status_code == 201, again.content
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    assert db_state() == state == (1, 1, 1)


def test_idempotency_key_with_another_body_is_422(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    url = book_url(org.id, patient.fhir_id)
    assert (
        post(
            api, url, book_body(schedule, schedule.planning_start), HTTP_IDEMPOTENCY_KEY="k"
        ).status_code
        == 201
    )
    state = db_state()
    other = book_body(schedule, schedule.planning_start + timedelta(minutes=15))
    result = outcome(post(api, url, other, HTTP_IDEMPOTENCY_KEY="k"), 422)
    assert expressions(result) == ["Idempotency-Key"]
    assert db_state() == state


def test_idempotency_key_is_per_patient(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    other = PatientFactory(organization=org, fhir_id="pat-2")
    first = post(
        api,
        book_url(org.id, patient.fhir_id),
        book_body(schedule, schedule.planning_start),
        HTTP_IDEMPOTENCY_KEY="k",
    )
    second = post(
        api,
        book_url(org.id, other.fhir_id),
        book_body(schedule, schedule.planning_start + timedelta(minutes=15)),
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


def test_failed_booking_does_not_consume_the_key(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    url = book_url(org.id, patient.fhir_id)
    outcome(
        post(api, url, book_body(schedule, _shift(schedule, minutes=5)), HTTP_IDEMPOTENCY_KEY="k"),
        422,
    )
    assert IdempotencyKey.objects.count() == 0
    assert (
        post(
            api, url, book_body(schedule, schedule.planning_start), HTTP_IDEMPOTENCY_KEY="k"
        ).status_code
        == 201
    )


@pytest.mark.parametrize("key", ["", "x" * 201, "with space"])
def test_bad_idempotency_key_is_400(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, key: str
) -> None:
    result = outcome(
        post(
            api,
            book_url(org.id, patient.fhir_id),
            book_body(schedule, schedule.planning_start),
            HTTP_IDEMPOTENCY_KEY=key,
        ),
        400,
    )
    assert expressions(result) == ["Idempotency-Key"]
    assert Appointment.objects.count() == 0


# --------------------------------------------------------------------------- tenancy


def test_outsider_organization_is_404(
    api: APIClient, outsider_org: Organization, schedule: Schedule
) -> None:
    foreign_patient = PatientFactory(organization=outsider_org, fhir_id="pat-b")
    foreign_schedule = ScheduleFactory(organization=outsider_org)
    response = post(
        api,
        book_url(outsider_org.id, foreign_patient.fhir_id),
        book_body(foreign_schedule, foreign_schedule.planning_start),
    )
    outcome(response, 404)
    assert Appointment.objects.count() == 0


def test_unknown_organization_is_404(api: APIClient, patient: Patient, schedule: Schedule) -> None:
    outcome(
        post(
            api,
            book_url("no-such-org", patient.fhir_id),
            book_body(schedule, schedule.planning_start),
        ),
        404,
    )


def test_outsider_patient_is_404(
    api: APIClient, org: Organization, outsider_org: Organization, schedule: Schedule
) -> None:
    foreign_patient = PatientFactory(organization=outsider_org, fhir_id="pat-b")
    outcome(
        post(
            api,
            book_url(org.id, foreign_patient.fhir_id),
            book_body(schedule, schedule.planning_start),
        ),
        404,
    )
    assert Appointment.objects.count() == 0


def test_patient_app_cannot_book_for_another_patient(
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    make_api_client: Callable[..., tuple[ApiClient, str]],
) -> None:
    PatientFactory(organization=org, fhir_id="pat-2")
    _, token = make_api_client(org, patient_id="pat-2", scopes="patient/Appointment.c")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    outcome(
        post(
            client, book_url(org.id, patient.fhir_id), book_body(schedule, schedule.planning_start)
        ),
        404,
    )
    ok = post(client, book_url(org.id, "pat-2"), book_body(schedule, schedule.planning_start))
    assert ok.status_code == 201, ok.content


def test_no_token_is_401_and_no_scope_is_403(
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    make_api_client: Callable[..., tuple[ApiClient, str]],
) -> None:
    url = book_url(org.id, patient.fhir_id)
    outcome(post(APIClient(), url, book_body(schedule, schedule.planning_start)), 401)
    _, token = make_api_client(org, scopes="system/Appointment.rs")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    outcome(post(client, url, book_body(schedule, schedule.planning_start)), 403)
    assert Appointment.objects.count() == 0


# --------------------------------------------------------------------------- staff services


def test_cancel_frees_the_slot_and_is_audited(
    org: Organization, patient: Patient, schedule: Schedule
) -> None:
    booked = services.appointment_book(
        organization=org,
        patient=patient,
        schedule_id=schedule.fhir_id,
        start=schedule.planning_start,
        practitioner_role_id=schedule.practitioner_role.fhir_id,
        status="booked",
        comment="",
        actor="client-1",
    ).appointment
    cancelled = services.appointment_cancel(
        organization=org, appointment=booked, actor="alice", reason="ill"
    )
    assert cancelled.status == AppointmentStatus.CANCELLED
    event = AuditEvent.objects.get(action=AuditEvent.Action.CANCELLED)
    assert (event.actor, event.detail) == (
        "alice",
        {"status": ["booked", "cancelled"], "reason": "ill"},
    )
    # Cancelling again changes nothing and writes nothing.
    services.appointment_cancel(organization=org, appointment=booked, actor="alice")
    assert AuditEvent.objects.filter(action=AuditEvent.Action.CANCELLED).count() == 1
    again = services.appointment_book(
        organization=org,
        patient=patient,
        schedule_id=schedule.fhir_id,
        start=schedule.planning_start,
        practitioner_role_id=schedule.practitioner_role.fhir_id,
        status="booked",
        comment="",
        actor="client-1",
    )
    assert again.created and again.appointment.pk != booked.pk


def test_cancel_of_another_organizations_appointment_is_refused(
    org: Organization, outsider_org: Organization
) -> None:
    foreign = AppointmentFactory(organization=outsider_org)
    with pytest.raises(NotFound):
        services.appointment_cancel(organization=org, appointment=foreign, actor="alice")
    foreign.refresh_from_db()
    assert foreign.status == AppointmentStatus.BOOKED


def test_noshow_only_after_the_start(org: Organization, patient: Patient) -> None:
    future = AppointmentFactory(organization=org, patient=patient)
    with pytest.raises(BusinessRuleViolation):
        services.appointment_mark_noshow(organization=org, appointment=future, actor="alice")
    past_start = timezone.now() - timedelta(hours=2)
    past = AppointmentFactory(
        organization=org, patient=patient, start=past_start, end=past_start + timedelta(minutes=15)
    )
    marked = services.appointment_mark_noshow(organization=org, appointment=past, actor="alice")
    assert marked.status == AppointmentStatus.NOSHOW
    event = AuditEvent.objects.get()
    assert (event.action, event.appointment_fhir_id) == (AuditEvent.Action.NOSHOW, past.fhir_id)
    with pytest.raises(BusinessRuleViolation):
        services.appointment_mark_noshow(organization=org, appointment=past, actor="alice")


def test_key_race_lost_to_another_request_is_422_and_rolled_back(
    org: Organization, patient: Patient, schedule: Schedule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests with one key but different bodies, neither seeing the other's key row
    (as in two concurrent transactions): the key's unique constraint rejects the second,
    its appointment is rolled back, and the caller learns the key was used elsewhere."""
    kwargs: dict[str, Any] = {
        "organization": org,
        "patient": patient,
        "schedule_id": schedule.fhir_id,
        "practitioner_role_id": schedule.practitioner_role.fhir_id,
        "status": "booked",
        "comment": "",
        "actor": "svc",
        "idempotency_key": "k",
    }
    services.appointment_book(start=schedule.planning_start, **kwargs)
    real_replay = booking_service._replay
    calls: list[int] = []

    def blind_then_real(**kw: Any) -> Any:
        calls.append(1)
        return None if len(calls) <= 2 else real_replay(**kw)

    monkeypatch.setattr(booking_service, "_replay", blind_then_real)
    with pytest.raises(BusinessRuleViolation) as caught:
        services.appointment_book(start=schedule.planning_start + timedelta(minutes=15), **kwargs)
    assert caught.value.expression == ["Idempotency-Key"]
    assert len(calls) == 3
    assert db_state() == (1, 1, 1)


@pytest.mark.django_db
def test_lock_occupants_creates_and_relocks_many_keys(org: Organization) -> None:
    """An import locks every occupant and patient of a bundle: more keys than one
    statement may bind on SQLite or PostgreSQL go in batches, existing rows lock again."""
    from django.db import transaction

    from scheduling.models import OccupantLock
    from scheduling.services.claims import lock_occupants

    keys = {f"patient:{i}" for i in range(1203)} | {"", "practitioner:1"}
    with transaction.atomic():
        lock_occupants(organization=org, keys=keys)
        lock_occupants(organization=org, keys=keys)
    stored = set(OccupantLock.objects.filter(organization=org).values_list("key", flat=True))
    assert stored == keys - {""}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_occupant_lock_blocks_the_next_writer_without_rewriting_its_row(
    org: Organization,
) -> None:
    """``lock_occupants`` on an existing row must lock it until the end of the transaction
    (another writer waits), and writes no new version of it (``xmin`` unchanged)."""
    import threading

    from django.db import OperationalError, connection, connections, transaction

    from scheduling.services.claims import lock_occupants

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    key = "practitioner:7"
    with transaction.atomic():
        lock_occupants(organization=org, keys={key})

    def version() -> str:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT xmin::text FROM scheduling_occupantlock "
                "WHERE organization_id = %s AND key = %s",
                [org.pk, key],
            )
            return str(cursor.fetchone()[0])

    before = version()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                lock_occupants(organization=org, keys={key})
                holding.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(OperationalError), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '300ms'")
            lock_occupants(organization=org, keys={key})
    finally:
        release.set()
        holder.join(10)
    with transaction.atomic():
        lock_occupants(organization=org, keys={key})  # free again once the holder is done
    assert version() == before


# --------------------------------------------------------------------------- under the lock


@pytest.fixture
def arrived_before_the_winner_committed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Requests pass the early check as if the winner had not committed yet (a race), and
    the locked check's full read (``slot_take``) is counted: its calls are returned."""
    monkeypatch.setattr(booking_service._TAKEN_AT, "rows", lambda *args, **kwargs: [])
    real = booking_service.slot_take
    calls: list[int] = []

    def counted(**kwargs: Any) -> Any:
        calls.append(1)
        return real(**kwargs)

    monkeypatch.setattr(booking_service, "slot_take", counted)
    return calls


def test_a_loser_that_queued_for_the_lock_is_refused_by_the_plain_check_in_the_same_words(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, request: Any
) -> None:
    """A request that got past the early check before the winner committed is refused,
    once it holds the lock, by the same plain check (an appointment of the occupant starts
    then), without the full locked read, and with the OperationOutcome a later request
    gets from the early check."""
    start = schedule.planning_start
    won = post(api, book_url(org.id, patient.fhir_id), book_body(schedule, start))
    assert won.status_code == 201, won.content
    other = PatientFactory(organization=org, fhir_id="pat-2")
    url, body = book_url(org.id, other.fhir_id), book_body(schedule, start)
    early = outcome(post(api, url, body), 409)
    before = db_state()

    full_reads = request.getfixturevalue("arrived_before_the_winner_committed")
    with CaptureQueriesContext(connection) as captured:
        locked = outcome(post(api, url, body), 409)

    assert locked == early
    diagnostics = locked["issue"][0]["diagnostics"]
    assert "is no longer free: its practitioner is booked then" in diagnostics
    assert full_reads == []
    assert db_state() == before
    # It wrote nothing but its locks, and ends without a ROLLBACK (TO SAVEPOINT, in a
    # test), at which psycopg would forget the connection's prepared statements.
    sqls = [q["sql"] or "" for q in captured.captured_queries]
    assert not any(sql.upper().startswith("ROLLBACK") for sql in sqls), sqls


@pytest.mark.parametrize("what", ["hold", "stored-busy-slot"])
def test_what_the_plain_check_cannot_word_alike_is_left_to_the_locked_check(
    api: APIClient,
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    arrived_before_the_winner_committed: list[int],
    what: str,
) -> None:
    """A live hold at that start gets the engine's own words ("held ..."), and a stored
    slot there its own status: the plain check under the lock answers neither."""
    start = schedule.planning_start
    if what == "hold":
        AppointmentFactory(
            organization=org,
            schedule=schedule,
            start=start,
            status=AppointmentStatus.PENDING,
            held_until=timezone.now() + timedelta(minutes=10),
        )
        expected = "held by another patient for now"
    else:
        SlotFactory(organization=org, schedule=schedule, start=start, status=SlotStatus.BUSY)
        AppointmentFactory(organization=org, schedule=schedule, start=start)
        expected = "is busy; choose another slot"
    body = outcome(post(api, book_url(org.id, patient.fhir_id), book_body(schedule, start)), 409)
    assert expected in body["issue"][0]["diagnostics"]
    assert arrived_before_the_winner_committed == [1]


def test_a_cap_per_patient_still_comes_before_the_plain_check_under_the_lock(
    api: APIClient,
    org: Organization,
    patient: Patient,
    arrived_before_the_winner_committed: list[int],
) -> None:
    """Under the lock a schedule's cap on a patient's upcoming bookings (422) is checked
    before the slot is found taken (409), as it always was there."""
    schedule = ScheduleFactory(organization=org, max_active_per_patient=1)
    start = schedule.planning_start
    AppointmentFactory(organization=org, schedule=schedule, patient=patient, start=start)
    later = start + timedelta(minutes=30)
    AppointmentFactory(organization=org, schedule=schedule, start=later)
    body = outcome(post(api, book_url(org.id, patient.fhir_id), book_body(schedule, later)), 422)
    assert "at most 1 upcoming booking" in body["issue"][0]["diagnostics"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_check_in_the_locks_round_trip_sees_what_the_holder_committed_meanwhile(
    org: Organization,
) -> None:
    """The plain check is pipelined with the lock statement; it must still read with a
    snapshot taken after the lock wait, so it sees the booking the lock's holder
    committed while this request waited."""
    import threading
    import time

    from django.db import connection, connections, transaction

    from scheduling.selectors.common import utc_now
    from scheduling.services.claims import lock_occupants

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    schedule = ScheduleFactory(organization=org)
    start, occupant = schedule.planning_start, schedule.occupant
    with transaction.atomic():
        lock_occupants(organization=org, keys={occupant})
    holding, release = threading.Event(), threading.Event()

    def winner() -> None:
        try:
            with transaction.atomic():
                lock_occupants(organization=org, keys={occupant})
                AppointmentFactory(organization=org, schedule=schedule, start=start)
                holding.set()
                release.wait(10)
        finally:
            connections.close_all()

    def waiting() -> bool:
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            return bool(cursor.fetchone()[0])

    holder = threading.Thread(target=winner)
    holder.start()
    found: list[tuple[Any, ...]] = []

    def loser() -> None:
        try:
            with transaction.atomic():
                found.extend(
                    lock_occupants(
                        organization=org,
                        keys={occupant},
                        then=(
                            booking_service._TAKEN_UNDER_LOCK,
                            (org.pk, occupant, schedule.pk, start, utc_now()),
                        ),
                    )
                )
        finally:
            connections.close_all()

    try:
        assert holding.wait(10)
        queued = threading.Thread(target=loser)
        queued.start()
        for _ in range(200):  # until the loser waits for the lock
            if waiting():
                break
            time.sleep(0.01)
        else:
            pytest.fail("the second request never waited for the occupant's lock")
        release.set()
        queued.join(10)
    finally:
        release.set()
        holder.join(10)
    assert found == [("a", 0)]


def test_a_winner_still_answers_with_the_patients_name(
    api: APIClient, org: Organization, schedule: Schedule
) -> None:
    """The booking services get the patient as a key only; the answer still shows the
    patient's name, read for it."""
    named = PatientFactory(organization=org, fhir_id="pat-named", given="Ada", family="Lovelace")
    response = post(
        api, book_url(org.id, named.fhir_id), book_body(schedule, schedule.planning_start)
    )
    assert response.status_code == 201, response.content
    actors = {
        p["actor"]["reference"]: p["actor"].get("display") for p in response.json()["participant"]
    }
    assert actors[f"Patient/{named.fhir_id}"] == "Ada Lovelace"
