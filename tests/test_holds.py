"""$hold, $confirm, $cancel and $reschedule: success, every error path, lapsing holds.

The clock is injected (``now=`` on services and selectors, ``scheduling.selectors.utc_now``
for the HTTP layer): a hold lapses in these tests without anyone waiting for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhirclient.models.appointment import Appointment as FCAppointment
from rest_framework.test import APIClient

from fhir_api import mappers
from fhir_api.models import ApiClient
from scheduling import selectors, services
from scheduling.errors import Conflict, InvalidInput
from scheduling.models import (
    Appointment,
    AuditEvent,
    IdempotencyKey,
    Organization,
    Patient,
    Schedule,
)
from scheduling.recurrence import Period
from tests.api_helpers import assert_outcome, body
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory

pytestmark = pytest.mark.django_db

HELD_UNTIL = "urn:extension:held-until"
SLOT = timedelta(minutes=15)


def op_url(org_id: str, patient_id: str, operation: str, appointment_id: str | None = None) -> str:
    base = f"/v2/{org_id}/fhir/R4/Patient/{patient_id}/Appointment"
    return f"{base}/{appointment_id}/${operation}" if appointment_id else f"{base}/${operation}"


def parameters(*items: tuple[str, str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, kind: value} for name, kind, value in items],
    }


def hold_body(
    schedule: Schedule, start: datetime, *extra: tuple[str, str, Any], role: str | None = None
) -> dict[str, Any]:
    return parameters(
        ("start", "valueDateTime", start.isoformat()),
        ("schedule", "valueString", schedule.fhir_id),
        ("practitionerRole", "valueString", role or schedule.practitioner_role.fhir_id),
        *extra,
    )


def minutes(value: float, unit: str = "min") -> tuple[str, str, Any]:
    duration = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return ("holdDuration", "valueDuration", duration)


def appointment(response: Any, status: int) -> dict[str, Any]:
    """The response's Appointment, valid for fhir.resources R4B and fhirclient."""
    assert response.status_code == status, response.content[:600]
    assert response["Content-Type"].startswith("application/fhir+json")
    data = body(response)
    assert data["resourceType"] == "Appointment"
    FhirAppointment.model_validate(data)
    FCAppointment(data)
    return data


def held_until(resource: dict[str, Any]) -> str | None:
    found = [e["valueInstant"] for e in resource.get("extension", []) if e["url"] == HELD_UNTIL]
    return found[0] if found else None


def expressions(data: dict[str, Any]) -> list[str]:
    return [e for issue in data["issue"] for e in issue.get("expression", [])]


@pytest.fixture
def patient(org: Organization) -> Patient:
    return PatientFactory(organization=org, fhir_id="pat-1")


@pytest.fixture
def other_patient(org: Organization) -> Patient:
    return PatientFactory(organization=org, fhir_id="pat-2")


@pytest.fixture
def schedule(org: Organization) -> Schedule:
    return ScheduleFactory(organization=org, fhir_id="sched-1")


class Clock:
    """The HTTP layer's clock (``scheduling.selectors.utc_now``), set by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)  # holds lapse on whole seconds
        monkeypatch.setattr(selectors, "utc_now", lambda: self.now)

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    yield Clock(monkeypatch)


def hold(
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    start: datetime,
    *,
    now: datetime,
    duration: timedelta = timedelta(minutes=5),
) -> Appointment:
    return services.appointment_hold(
        organization=org,
        patient=patient,
        schedule_id=schedule.fhir_id,
        start=start,
        practitioner_role_id=schedule.practitioner_role.fhir_id,
        comment="",
        actor="client-1",
        hold_duration=duration,
        now=now,
    ).appointment


def book(
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    start: datetime,
    *,
    now: datetime | None = None,
) -> Appointment:
    return services.appointment_book(
        organization=org,
        patient=patient,
        schedule_id=schedule.fhir_id,
        start=start,
        practitioner_role_id=schedule.practitioner_role.fhir_id,
        status="booked",
        comment="",
        actor="client-1",
        now=now,
    ).appointment


def slot_status(org: Organization, schedule: Schedule, start: datetime, now: datetime) -> str:
    results = selectors.slot_search(
        organization=org,
        window=Period(start, start + SLOT),
        schedule_ids=[schedule.fhir_id],
        now=now,
    )
    found = [r.status for r in results if r.start == start]
    assert len(found) == 1, found
    return str(found[0])


# --------------------------------------------------------------------------- $hold


def test_hold_answers_201_pending_with_held_until(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, clock: Clock
) -> None:
    start = schedule.planning_start + SLOT
    response = api.post(
        op_url(org.id, patient.fhir_id, "hold"),
        hold_body(schedule, start, ("comment", "valueString", "knee")),
        format="json",
    )
    data = appointment(response, 201)
    assert data["status"] == "pending"
    assert data["comment"] == "knee"
    assert datetime.fromisoformat(data["start"]) == start
    expiry = datetime.fromisoformat(held_until(data) or "")
    # Whole seconds, rounded up: what the client is shown is when the hold lapses.
    assert timedelta(0) <= expiry - (clock.now + timedelta(minutes=5)) < timedelta(seconds=1)
    assert response["Location"].endswith(f"/Patient/pat-1/Appointment/{data['id']}")
    stored = Appointment.objects.get(fhir_id=data["id"])
    assert stored.is_held and stored.held_until == expiry
    assert AuditEvent.objects.filter(appointment=stored, action="held").count() == 1
    # A live hold keeps the slot: Slot search says so and nobody else gets it.
    assert slot_status(org, schedule, start, clock.now) == "busy-tentative"


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [(minutes(10, "s"), 10), (minutes(90, "s"), 90), (minutes(2), 120), (minutes(60), 3600)],
)
def test_hold_duration_in_seconds_or_minutes(
    api: APIClient,
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    clock: Clock,
    duration: tuple[str, str, Any],
    seconds: int,
) -> None:
    response = api.post(
        op_url(org.id, patient.fhir_id, "hold"),
        hold_body(schedule, schedule.planning_start, duration),
        format="json",
    )
    data = appointment(response, 201)
    stored = Appointment.objects.get(fhir_id=data["id"])
    assert stored.held_until is not None
    lasts = stored.held_until - clock.now
    assert timedelta(seconds=seconds) <= lasts < timedelta(seconds=seconds + 1)


@pytest.mark.parametrize(
    "duration",
    [
        minutes(9, "s"),
        minutes(61),
        minutes(0),
        minutes(-1),
        minutes(1, "h"),
        (
            "holdDuration",
            "valueDuration",
            {"value": 5, "system": "http://example.org", "code": "min"},
        ),
        ("holdDuration", "valueString", "5 min"),
        ("holdDuration", "valueDuration", {"unit": "min"}),
    ],
)
def test_bad_hold_duration_is_400_naming_it(
    api: APIClient,
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    duration: tuple[str, str, Any],
) -> None:
    response = api.post(
        op_url(org.id, patient.fhir_id, "hold"),
        hold_body(schedule, schedule.planning_start, duration),
        format="json",
    )
    data = assert_outcome(response, 400)
    assert "Parameters.parameter[holdDuration]" in expressions(data)
    assert not Appointment.objects.exists()


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda b: b["parameter"].pop(0), "Parameters.parameter[start]"),
        (lambda b: b["parameter"].pop(1), "Parameters.parameter[schedule]"),
        (lambda b: b["parameter"].pop(2), "Parameters.parameter[practitionerRole]"),
        (
            lambda b: b["parameter"].append({"name": "status", "valueString": "booked"}),
            "Parameters.parameter[status]",
        ),
        (
            lambda b: b["parameter"][0].update(valueDateTime="2026-06-01T09:00:00"),
            "Parameters.parameter[start]",
        ),
        (lambda b: b.update(resourceType="Bundle"), "Parameters.resourceType"),
    ],
)
def test_malformed_hold_is_400(
    api: APIClient,
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    change: Callable[[dict[str, Any]], Any],
    expression: str,
) -> None:
    request = hold_body(schedule, schedule.planning_start)
    change(request)
    data = assert_outcome(
        api.post(op_url(org.id, patient.fhir_id, "hold"), request, format="json"), 400
    )
    assert expression in expressions(data)
    assert not Appointment.objects.exists()


def test_hold_of_a_taken_slot_is_409_and_of_no_slot_422(
    api: APIClient,
    org: Organization,
    patient: Patient,
    other_patient: Patient,
    schedule: Schedule,
    clock: Clock,
) -> None:
    start = schedule.planning_start
    url = op_url(org.id, other_patient.fhir_id, "hold")
    hold(org, patient, schedule, start, now=clock.now)
    data = assert_outcome(api.post(url, hold_body(schedule, start), format="json"), 409)
    assert data["issue"][0]["code"] == "conflict"
    book(org, patient, schedule, start + SLOT)
    assert_outcome(api.post(url, hold_body(schedule, start + SLOT), format="json"), 409)
    # A live hold refuses $book-slot too.
    book_url = op_url(org.id, other_patient.fhir_id, "book-slot")
    booking = hold_body(schedule, start, ("status", "valueString", "booked"))
    assert_outcome(api.post(book_url, booking, format="json"), 409)
    off_grid = assert_outcome(
        api.post(url, hold_body(schedule, start + timedelta(minutes=7)), format="json"), 422
    )
    assert "Parameters.parameter[start]" in expressions(off_grid)
    wrong_role = assert_outcome(
        api.post(url, hold_body(schedule, start, role="nobody"), format="json"), 422
    )
    assert "Parameters.parameter[practitionerRole]" in expressions(wrong_role)
    assert Appointment.objects.count() == 2


def test_hold_idempotency_key_replays_the_hold(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, clock: Clock
) -> None:
    url = op_url(org.id, patient.fhir_id, "hold")
    first = appointment(
        api.post(
            url,
            hold_body(schedule, schedule.planning_start),
            format="json",
            HTTP_IDEMPOTENCY_KEY="k-1",
        ),
        201,
    )
    clock.advance(timedelta(seconds=3))
    second = appointment(
        api.post(
            url,
            hold_body(schedule, schedule.planning_start),
            format="json",
            HTTP_IDEMPOTENCY_KEY="k-1",
        ),
        201,
    )
    assert second["id"] == first["id"]
    assert held_until(second) == held_until(first)
    assert Appointment.objects.count() == 1
    other = api.post(
        url,
        hold_body(schedule, schedule.planning_start + SLOT),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert "Idempotency-Key" in expressions(assert_outcome(other, 422))


def test_hold_idempotency_key_with_another_duration_is_another_request(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, clock: Clock
) -> None:
    """A key names one request: reused with a different holdDuration it is refused (422,
    as for a different slot), never answered with a hold of another length. The same
    duration spelled otherwise (300 s, or left out for the default 5 min) is the same
    request and replays the hold."""
    url = op_url(org.id, patient.fhir_id, "hold")
    start = schedule.planning_start

    def post(*extra: tuple[str, str, Any]) -> Any:
        return api.post(
            url, hold_body(schedule, start, *extra), format="json", HTTP_IDEMPOTENCY_KEY="h-1"
        )

    first = appointment(post(minutes(5)), 201)
    for same in [(), (minutes(300, "s"),)]:
        assert appointment(post(*same), 201)["id"] == first["id"]
    other = post(minutes(10))
    assert expressions(assert_outcome(other, 422)) == ["Idempotency-Key"]
    assert Appointment.objects.count() == 1
    assert held_until(
        appointment(
            api.get(f"/v2/{org.id}/fhir/R4/Patient/{patient.fhir_id}/Appointment/{first['id']}"),
            200,
        )
    ) == held_until(first)
    # A hold and a booking of the same slot are different requests too.
    booked = api.post(
        op_url(org.id, patient.fhir_id, "book-slot"),
        hold_body(schedule, start, ("status", "valueString", "booked")),
        format="json",
        HTTP_IDEMPOTENCY_KEY="h-1",
    )
    assert expressions(assert_outcome(booked, 422)) == ["Idempotency-Key"]


# --------------------------------------------------------------------------- lapsing


def test_a_hold_lapses_the_instant_held_until_passes(
    org: Organization, patient: Patient, other_patient: Patient, schedule: Schedule
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    start = schedule.planning_start
    held = hold(org, patient, schedule, start, now=t0, duration=timedelta(seconds=30))
    assert held.held_until == t0 + timedelta(seconds=30)
    just_before = t0 + timedelta(seconds=30) - timedelta(microseconds=1)
    lapsed_at = t0 + timedelta(seconds=30)

    def read(now: datetime) -> tuple[str, str | None]:
        stored = selectors.appointment_get(organization=org, patient=patient, fhir_id=held.fhir_id)
        resource = mappers.appointment_to_fhir(stored, now=now)
        return resource["status"], resource.get("cancelationReason", {}).get("text")

    assert read(just_before) == ("pending", None)
    assert slot_status(org, schedule, start, just_before) == "busy-tentative"
    assert read(lapsed_at) == ("cancelled", "hold expired")
    assert slot_status(org, schedule, start, lapsed_at) == "free"

    def search(status: str, now: datetime) -> list[str]:
        return [
            r.id
            for r in selectors.patient_appointment_search(
                organization=org, patient=patient, ids=[held.fhir_id], statuses=[status], now=now
            )
        ]

    assert search("pending", just_before) == [held.fhir_id]
    assert search("cancelled", just_before) == []
    assert search("pending", lapsed_at) == []
    assert search("cancelled", lapsed_at) == [held.fhir_id]

    with pytest.raises(Conflict, match="expired"):
        services.appointment_confirm(
            organization=org, appointment=held, actor="client-1", now=lapsed_at
        )
    # The time is free for anyone from that instant; the booking tidies the lapsed hold.
    taken = book(org, other_patient, schedule, start, now=lapsed_at)
    assert taken.status == "booked"
    held.refresh_from_db()
    assert (held.status, held.cancelation_reason) == ("cancelled", "hold expired")


def test_lapsed_hold_over_http_reads_cancelled_and_confirm_is_409(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, clock: Clock
) -> None:
    url = op_url(org.id, patient.fhir_id, "hold")
    data = appointment(
        api.post(
            url, hold_body(schedule, schedule.planning_start, minutes(10, "s")), format="json"
        ),
        201,
    )
    read_url = f"/v2/{org.id}/fhir/R4/Patient/{patient.fhir_id}/Appointment/{data['id']}"
    start = schedule.planning_start.isoformat()

    def slot_over_http() -> str:
        # The same search each time: a cached answer must not outlive the hold. The day
        # is named: the schedule may lie past the default seven days (on a Monday morning
        # the factory's "next Monday" is seven days and some hours away).
        day = schedule.planning_start.date().isoformat()
        found = body(
            api.get(
                f"/v2/{org.id}/fhir/R4/Slot?schedule={schedule.fhir_id}&start=ge{day}&start=le{day}"
            )
        )
        return next(
            e["resource"]["status"]
            for e in found["entry"]
            if datetime.fromisoformat(e["resource"]["start"]).isoformat() == start
        )

    assert slot_over_http() == "busy-tentative"
    clock.advance(timedelta(seconds=9))
    pending = api.get(read_url)
    assert appointment(pending, 200)["status"] == "pending"
    etag = pending["ETag"]
    assert api.get(read_url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert slot_over_http() == "busy-tentative"
    clock.advance(timedelta(seconds=1))
    assert slot_over_http() == "free"
    # The row has not changed, but what it reads as has: no 304 for the pending version.
    lapsed_read = api.get(read_url, HTTP_IF_NONE_MATCH=etag)
    lapsed = appointment(lapsed_read, 200)
    assert lapsed_read["ETag"] != etag
    assert api.get(read_url, HTTP_IF_NONE_MATCH=lapsed_read["ETag"]).status_code == 304
    assert lapsed["status"] == "cancelled"
    assert lapsed["cancelationReason"] == {"text": "hold expired"}
    assert held_until(lapsed) is None
    search = api.get(
        f"/v2/{org.id}/fhir/R4/Patient/{patient.fhir_id}/Appointment",
        {"_id": data["id"], "status": "cancelled"},
    )
    assert [e["resource"]["status"] for e in body(search)["entry"]] == ["cancelled"]
    confirm = api.post(op_url(org.id, patient.fhir_id, "confirm", data["id"]), format="json")
    assert "expired" in assert_outcome(confirm, 409)["issue"][0]["diagnostics"]
    # Cancelling what already reads as cancelled: 200, unchanged, nothing written.
    events = AuditEvent.objects.count()
    cancel = api.post(op_url(org.id, patient.fhir_id, "cancel", data["id"]), format="json")
    assert appointment(cancel, 200)["cancelationReason"] == {"text": "hold expired"}
    assert AuditEvent.objects.count() == events


def test_expire_holds_command_tidies_only_lapsed_holds(
    org: Organization, outsider_org: Organization, patient: Patient, schedule: Schedule
) -> None:
    now = datetime.now(UTC)
    # The lapsed hold is made last: a booking near a lapsed hold tidies it itself (its
    # buffers may reach), which would leave nothing for the command.
    live = hold(org, patient, schedule, schedule.planning_start + SLOT, now=now)
    booked = book(org, patient, schedule, schedule.planning_start + 2 * SLOT)
    lapsed = hold(org, patient, schedule, schedule.planning_start, now=now - timedelta(minutes=6))
    foreign_schedule = ScheduleFactory(organization=outsider_org)
    foreign = hold(
        outsider_org,
        PatientFactory(organization=outsider_org),
        foreign_schedule,
        foreign_schedule.planning_start,
        now=now - timedelta(hours=1),
    )
    call_command("expire_holds", "--organization", org.id, stdout=_Sink())
    for row in (lapsed, live, booked, foreign):
        row.refresh_from_db()
    assert (lapsed.status, lapsed.cancelation_reason) == ("cancelled", "hold expired")
    assert (live.status, booked.status, foreign.status) == ("pending", "booked", "pending")
    event = AuditEvent.objects.get(appointment=lapsed, action="hold-expired")
    assert event.actor == "command:expire_holds"
    call_command("expire_holds", stdout=_Sink())
    foreign.refresh_from_db()
    assert foreign.status == "cancelled"


class _Sink:
    def write(self, _: str) -> None:
        pass

    def flush(self) -> None:
        pass


def test_hold_duration_out_of_range_in_the_service(
    org: Organization, patient: Patient, schedule: Schedule
) -> None:
    for duration in (timedelta(seconds=9), timedelta(minutes=60, seconds=1)):
        with pytest.raises(InvalidInput):
            hold(
                org,
                patient,
                schedule,
                schedule.planning_start,
                now=datetime.now(UTC),
                duration=duration,
            )
    assert not Appointment.objects.exists()


# --------------------------------------------------------------------------- $confirm


def test_confirm_turns_a_live_hold_into_a_booking(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, clock: Clock
) -> None:
    held = hold(org, patient, schedule, schedule.planning_start, now=clock.now)
    url = op_url(org.id, patient.fhir_id, "confirm", held.fhir_id)
    clock.advance(timedelta(minutes=4, seconds=59))
    data = appointment(api.post(url, format="json"), 200)
    assert data["id"] == held.fhir_id
    assert data["status"] == "booked"
    assert held_until(data) is None
    held.refresh_from_db()
    assert (held.status, held.held_until, held.practitioner_status) == (
        "booked",
        None,
        "accepted",
    )
    event = AuditEvent.objects.get(appointment=held, action="confirmed")
    assert event.detail["status"] == ["pending", "booked"]
    # Confirmed is no longer a hold: confirming again is a conflict, and so is time passing
    # (nothing lapses any more).
    clock.advance(timedelta(hours=1))
    assert_outcome(api.post(url, format="json"), 409)
    read_url = f"/v2/{org.id}/fhir/R4/Patient/{patient.fhir_id}/Appointment/{held.fhir_id}"
    assert appointment(api.get(read_url), 200)["status"] == "booked"


@pytest.mark.parametrize("status", ["booked", "pending", "proposed", "cancelled"])
def test_confirm_of_anything_but_a_hold_is_409(
    api: APIClient, org: Organization, patient: Patient, status: str
) -> None:
    row = AppointmentFactory(organization=org, patient=patient, status=status)
    before = Appointment.objects.values().get(pk=row.pk)
    response = api.post(
        op_url(org.id, patient.fhir_id, "confirm", row.fhir_id),
        {"resourceType": "Parameters"},
        format="json",
    )
    assert "Appointment.status" in expressions(assert_outcome(response, 409))
    assert Appointment.objects.values().get(pk=row.pk) == before


def test_confirm_takes_no_parameters(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, clock: Clock
) -> None:
    held = hold(org, patient, schedule, schedule.planning_start, now=clock.now)
    response = api.post(
        op_url(org.id, patient.fhir_id, "confirm", held.fhir_id),
        parameters(("reason", "valueString", "x")),
        format="json",
    )
    assert "Parameters.parameter[reason]" in expressions(assert_outcome(response, 400))
    assert_outcome(
        api.post(
            op_url(org.id, patient.fhir_id, "confirm", held.fhir_id),
            {"resourceType": "Bundle"},
            format="json",
        ),
        400,
    )
    held.refresh_from_db()
    assert held.status == "pending"


# --------------------------------------------------------------------------- $cancel


def test_cancel_frees_the_slot_with_the_reason(
    api: APIClient,
    org: Organization,
    patient: Patient,
    other_patient: Patient,
    schedule: Schedule,
    clock: Clock,
) -> None:
    row = book(org, patient, schedule, schedule.planning_start)
    url = op_url(org.id, patient.fhir_id, "cancel", row.fhir_id)
    data = appointment(
        api.post(url, parameters(("reason", "valueString", "feeling better")), format="json"),
        200,
    )
    assert (data["id"], data["status"]) == (row.fhir_id, "cancelled")
    assert data["cancelationReason"] == {"text": "feeling better"}
    assert slot_status(org, schedule, schedule.planning_start, clock.now) == "free"
    assert book(org, other_patient, schedule, schedule.planning_start).status == "booked"
    # Again: 200 and unchanged (the first reason stays), nothing more written.
    events = AuditEvent.objects.filter(appointment=row).count()
    again = appointment(
        api.post(url, parameters(("reason", "valueString", "other")), format="json"), 200
    )
    assert again["cancelationReason"] == {"text": "feeling better"}
    assert AuditEvent.objects.filter(appointment=row).count() == events


def test_cancel_without_body_or_reason(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule, clock: Clock
) -> None:
    held = hold(org, patient, schedule, schedule.planning_start, now=clock.now)
    data = appointment(api.post(op_url(org.id, patient.fhir_id, "cancel", held.fhir_id)), 200)
    assert data["status"] == "cancelled"
    assert "cancelationReason" not in data
    assert held_until(data) is None


def test_cancel_of_a_started_appointment_is_422_but_staff_may(
    api: APIClient, org: Organization, patient: Patient
) -> None:
    started = datetime.now(UTC) - timedelta(minutes=5)
    row = AppointmentFactory(
        organization=org, patient=patient, start=started, end=started + timedelta(minutes=30)
    )
    response = api.post(op_url(org.id, patient.fhir_id, "cancel", row.fhir_id), format="json")
    data = assert_outcome(response, 422)
    assert "started" in data["issue"][0]["diagnostics"]
    assert expressions(data) == ["Appointment.start"]
    row.refresh_from_db()
    assert row.status == "booked"
    services.appointment_cancel(
        organization=org, appointment=row, actor="staff:alice", reason="x", by_staff=True
    )
    row.refresh_from_db()
    assert row.status == "cancelled"


@pytest.mark.parametrize("status", ["noshow", "entered-in-error"])
def test_cancel_of_a_finished_appointment_is_422(
    api: APIClient, org: Organization, patient: Patient, status: str
) -> None:
    row = AppointmentFactory(organization=org, patient=patient, status=status)
    response = api.post(op_url(org.id, patient.fhir_id, "cancel", row.fhir_id), format="json")
    assert_outcome(response, 422)
    row.refresh_from_db()
    assert row.status == status


@pytest.mark.parametrize(
    "request_body",
    [
        parameters(("reason", "valueInteger", 3)),
        parameters(("reason", "valueString", "a"), ("reason", "valueString", "b")),
        parameters(("why", "valueString", "a")),
        {"resourceType": "Appointment"},
    ],
)
def test_malformed_cancel_is_400(
    api: APIClient, org: Organization, patient: Patient, request_body: dict[str, Any]
) -> None:
    row = AppointmentFactory(organization=org, patient=patient)
    response = api.post(
        op_url(org.id, patient.fhir_id, "cancel", row.fhir_id), request_body, format="json"
    )
    assert_outcome(response, 400)
    row.refresh_from_db()
    assert row.status == "booked"


def test_cancel_idempotency_key(
    api: APIClient, org: Organization, patient: Patient, schedule: Schedule
) -> None:
    first = book(org, patient, schedule, schedule.planning_start)
    second = book(org, patient, schedule, schedule.planning_start + SLOT)
    url = op_url(org.id, patient.fhir_id, "cancel", first.fhir_id)
    reason = parameters(("reason", "valueString", "r"))
    a = appointment(api.post(url, reason, format="json", HTTP_IDEMPOTENCY_KEY="c-1"), 200)
    b = appointment(api.post(url, reason, format="json", HTTP_IDEMPOTENCY_KEY="c-1"), 200)
    assert a == b
    assert IdempotencyKey.objects.count() == 1
    # The same key for another appointment is another request: refused, nothing cancelled.
    other = api.post(
        op_url(org.id, patient.fhir_id, "cancel", second.fhir_id),
        reason,
        format="json",
        HTTP_IDEMPOTENCY_KEY="c-1",
    )
    assert expressions(assert_outcome(other, 422)) == ["Idempotency-Key"]
    second.refresh_from_db()
    assert second.status == "booked"
    bad = api.post(url, reason, format="json", HTTP_IDEMPOTENCY_KEY="has space")
    assert_outcome(bad, 400)


# --------------------------------------------------------------------------- $reschedule


@pytest.fixture
def two_schedules(org: Organization) -> tuple[Schedule, Schedule]:
    """Two 30-minute schedules of one practitioner and role, the second 15 minutes later:
    a move from the first's 09:00 to the second's 09:15 overlaps itself."""
    first = ScheduleFactory(organization=org, fhir_id="early", slot_minutes=30)
    second = ScheduleFactory(
        organization=org,
        fhir_id="late",
        slot_minutes=30,
        practitioner_role=first.practitioner_role,
        planning_start=first.planning_start + SLOT,
        planning_end=first.planning_end + SLOT,
    )
    return first, second


def reschedule_body(start: datetime, *extra: tuple[str, str, Any]) -> dict[str, Any]:
    return parameters(("start", "valueDateTime", start.isoformat()), *extra)


def test_reschedule_moves_the_same_appointment(
    api: APIClient,
    org: Organization,
    patient: Patient,
    other_patient: Patient,
    schedule: Schedule,
    clock: Clock,
) -> None:
    row = book(org, patient, schedule, schedule.planning_start)
    new_start = schedule.planning_start + 4 * SLOT
    url = op_url(org.id, patient.fhir_id, "reschedule", row.fhir_id)
    data = appointment(api.post(url, reschedule_body(new_start), format="json"), 200)
    assert data["id"] == row.fhir_id
    assert data["status"] == "booked"
    assert datetime.fromisoformat(data["start"]) == new_start
    assert datetime.fromisoformat(data["end"]) == new_start + SLOT
    assert Appointment.objects.count() == 1
    # The old slot is free at once, the new one taken.
    assert slot_status(org, schedule, schedule.planning_start, clock.now) == "free"
    assert slot_status(org, schedule, new_start, clock.now) == "busy"
    assert book(org, other_patient, schedule, schedule.planning_start).status == "booked"


def test_reschedule_within_its_own_time(
    api: APIClient, org: Organization, patient: Patient, two_schedules: tuple[Schedule, Schedule]
) -> None:
    early, late = two_schedules
    row = book(org, patient, early, early.planning_start)
    url = op_url(org.id, patient.fhir_id, "reschedule", row.fhir_id)
    moved = early.planning_start + SLOT
    data = appointment(
        api.post(
            url, reschedule_body(moved, ("schedule", "valueString", "Schedule/late")), format="json"
        ),
        200,
    )
    assert datetime.fromisoformat(data["start"]) == moved
    row.refresh_from_db()
    assert (row.start, row.schedule_id) == (moved, late.pk)


def test_reschedule_onto_a_taken_slot_is_409_and_changes_nothing(
    api: APIClient,
    org: Organization,
    patient: Patient,
    other_patient: Patient,
    schedule: Schedule,
    clock: Clock,
) -> None:
    row = book(org, patient, schedule, schedule.planning_start)
    book(org, other_patient, schedule, schedule.planning_start + SLOT)
    hold(org, other_patient, schedule, schedule.planning_start + 2 * SLOT, now=clock.now)
    before = Appointment.objects.values().get(pk=row.pk)
    events = AuditEvent.objects.count()
    url = op_url(org.id, patient.fhir_id, "reschedule", row.fhir_id)
    for taken in (schedule.planning_start + SLOT, schedule.planning_start + 2 * SLOT):
        assert_outcome(api.post(url, reschedule_body(taken), format="json"), 409)
    off_grid = api.post(
        url, reschedule_body(schedule.planning_start + timedelta(minutes=7)), format="json"
    )
    assert "Parameters.parameter[start]" in expressions(assert_outcome(off_grid, 422))
    wrong_role = api.post(
        url,
        reschedule_body(
            schedule.planning_start + 3 * SLOT, ("practitionerRole", "valueString", "nobody")
        ),
        format="json",
    )
    assert_outcome(wrong_role, 422)
    assert Appointment.objects.values().get(pk=row.pk) == before
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    "request_body",
    [
        parameters(),
        parameters(("start", "valueString", "tomorrow")),
        parameters(("start", "valueDateTime", "2026-06-01T09:00:00")),
        parameters(
            ("start", "valueDateTime", "2026-06-01T09:00:00Z"), ("status", "valueString", "booked")
        ),
        parameters(
            ("start", "valueDateTime", "2026-06-01T09:00:00Z"), ("schedule", "valueString", "a b")
        ),
    ],
)
def test_malformed_reschedule_is_400(
    api: APIClient, org: Organization, patient: Patient, request_body: dict[str, Any]
) -> None:
    row = AppointmentFactory(organization=org, patient=patient)
    before = Appointment.objects.values().get(pk=row.pk)
    response = api.post(
        op_url(org.id, patient.fhir_id, "reschedule", row.fhir_id), request_body, format="json"
    )
    assert_outcome(response, 400)
    assert Appointment.objects.values().get(pk=row.pk) == before


# --------------------------------------------------------------------------- 404 and scopes

OPERATIONS_ON_ONE = ["confirm", "cancel", "reschedule"]


@pytest.mark.parametrize("operation", OPERATIONS_ON_ONE)
def test_unknown_foreign_and_generated_appointments_are_404(
    api: APIClient,
    org: Organization,
    outsider_org: Organization,
    patient: Patient,
    other_patient: Patient,
    schedule: Schedule,
    operation: str,
) -> None:
    theirs = book(org, other_patient, schedule, schedule.planning_start)
    foreign = AppointmentFactory(organization=outsider_org, fhir_id="foreign-appt")
    weekly = AppointmentFactory(
        organization=org, patient=patient, fhir_id="weekly", rrule="FREQ=WEEKLY;COUNT=4"
    )
    occurrence = f"weekly-{weekly.start + timedelta(weeks=1):%Y%m%dT%H%M%SZ}"
    request = reschedule_body(schedule.planning_start + SLOT) if operation == "reschedule" else {}
    snapshot = list(Appointment.objects.values().order_by("pk"))
    for target in ("nope", theirs.fhir_id, foreign.fhir_id, occurrence):
        response = api.post(
            op_url(org.id, patient.fhir_id, operation, target), request, format="json"
        )
        data = assert_outcome(response, 404)
        assert "pat-2" not in response.content.decode()
        if target == occurrence:
            assert "generated occurrence" in data["issue"][0]["diagnostics"]
    # The right appointment through another organisation or another patient's path.
    mine = book(org, patient, schedule, schedule.planning_start + 3 * SLOT)
    snapshot = list(Appointment.objects.values().order_by("pk"))
    for path in (
        op_url(outsider_org.id, patient.fhir_id, operation, mine.fhir_id),
        op_url("no-such-org", patient.fhir_id, operation, mine.fhir_id),
        op_url(org.id, other_patient.fhir_id, operation, mine.fhir_id),
        op_url(org.id, "no-such-patient", operation, mine.fhir_id),
    ):
        assert_outcome(api.post(path, request, format="json"), 404)
    assert list(Appointment.objects.values().order_by("pk")) == snapshot


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        ("system/Appointment.c", True),
        ("system/Appointment.u", True),
        ("system/Appointment.cu", True),
        ("system/Appointment.rs system/AppointmentResponse.c", False),
        ("system/Slot.rs", False),
    ],
)
def test_operations_need_appointment_c_or_u(
    org: Organization,
    patient: Patient,
    schedule: Schedule,
    make_api_client: Callable[..., tuple[ApiClient, str]],
    scopes: str,
    allowed: bool,
) -> None:
    _, token = make_api_client(org, scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    held = hold(org, patient, schedule, schedule.planning_start + SLOT, now=datetime.now(UTC))
    booked = book(org, patient, schedule, schedule.planning_start + 2 * SLOT)
    calls = [
        ("hold", None, hold_body(schedule, schedule.planning_start), 201),
        ("confirm", held.fhir_id, {}, 200),
        ("reschedule", booked.fhir_id, reschedule_body(schedule.planning_start + 3 * SLOT), 200),
        ("cancel", booked.fhir_id, {}, 200),
    ]
    for operation, target, request, ok in calls:
        response = client.post(
            op_url(org.id, patient.fhir_id, operation, target), request, format="json"
        )
        if allowed:
            appointment(response, ok)
        else:
            assert_outcome(response, 403)
    if not allowed:
        assert Appointment.objects.count() == 2


def test_patient_app_reaches_only_its_own_patient(
    org: Organization,
    patient: Patient,
    other_patient: Patient,
    schedule: Schedule,
    make_api_client: Callable[..., tuple[ApiClient, str]],
) -> None:
    _, token = make_api_client(org, scopes="patient/Appointment.cu", patient_id=patient.fhir_id)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    theirs = book(org, other_patient, schedule, schedule.planning_start)
    for operation in ("confirm", "cancel"):
        assert_outcome(
            client.post(op_url(org.id, other_patient.fhir_id, operation, theirs.fhir_id)), 404
        )
    assert_outcome(
        client.post(
            op_url(org.id, other_patient.fhir_id, "hold"),
            hold_body(schedule, schedule.planning_start + SLOT),
            format="json",
        ),
        404,
    )
    mine = appointment(
        client.post(
            op_url(org.id, patient.fhir_id, "hold"),
            hold_body(schedule, schedule.planning_start + SLOT),
            format="json",
        ),
        201,
    )
    appointment(client.post(op_url(org.id, patient.fhir_id, "confirm", mine["id"])), 200)
    theirs.refresh_from_db()
    assert theirs.status == "booked"


@pytest.mark.parametrize("operation", ["hold", "confirm", "cancel", "reschedule"])
def test_other_methods_are_405(
    api: APIClient, org: Organization, patient: Patient, operation: str
) -> None:
    row = AppointmentFactory(organization=org, patient=patient)
    target = None if operation == "hold" else row.fhir_id
    url = op_url(org.id, patient.fhir_id, operation, target)
    for method in (api.get, api.put, api.delete):
        assert_outcome(method(url), 405)


def test_export_then_import_keeps_a_live_hold_lapsing(
    org: Organization,
    outsider_org: Organization,
    patient: Patient,
    schedule: Schedule,
    tmp_path: Any,
) -> None:
    import io
    import json

    now = datetime.now(UTC).replace(microsecond=0)
    held = hold(org, patient, schedule, schedule.planning_start, now=now)
    out = io.StringIO()
    call_command("export_fhir", organization=org.id, stdout=out)
    bundle = json.loads(out.getvalue())
    exported = next(
        e["resource"] for e in bundle["entry"] if e["resource"].get("id") == held.fhir_id
    )
    assert held_until(exported) == (now + timedelta(minutes=5)).isoformat()
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    call_command(
        "import_fhir", str(path), organization=outsider_org.id, stdout=_Sink(), stderr=_Sink()
    )
    imported = Appointment.objects.get(organization=outsider_org, fhir_id=held.fhir_id)
    assert (imported.status, imported.held_until) == ("pending", held.held_until)
    assert imported.is_held and not imported.hold_lapsed(now + timedelta(minutes=4))
    assert imported.hold_lapsed(now + timedelta(minutes=5))


def test_hold_through_a_foreign_or_unknown_organisation_or_patient_is_404(
    api: APIClient,
    org: Organization,
    outsider_org: Organization,
    patient: Patient,
    schedule: Schedule,
) -> None:
    foreign_patient = PatientFactory(organization=outsider_org, fhir_id="xb-patient")
    request = hold_body(schedule, schedule.planning_start)
    for org_id, patient_id in (
        (outsider_org.id, patient.fhir_id),
        (outsider_org.id, foreign_patient.fhir_id),
        ("no-such-org", patient.fhir_id),
        (org.id, foreign_patient.fhir_id),
        (org.id, "no-such-patient"),
    ):
        response = api.post(op_url(org_id, patient_id, "hold"), request, format="json")
        assert_outcome(response, 404)
        assert "Clinic B" not in response.content.decode()
    assert not Appointment.objects.exists()


def test_cancel_within_the_cancellation_cutoff_is_422_but_staff_may(
    api: APIClient, org: Organization, patient: Patient
) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    schedule = ScheduleFactory(
        organization=org,
        planning_start=soon,
        planning_end=soon + timedelta(hours=48),
        cancellation_cutoff_hours=24,
    )
    near = book(org, patient, schedule, soon)
    far = book(org, patient, schedule, soon + timedelta(hours=30))
    response = api.post(op_url(org.id, patient.fhir_id, "cancel", near.fhir_id), format="json")
    data = assert_outcome(response, 422)
    assert "cancellationCutoff" in data["issue"][0]["diagnostics"]
    assert expressions(data) == ["Appointment.start"]
    near.refresh_from_db()
    assert near.status == "booked"
    assert (
        appointment(
            api.post(op_url(org.id, patient.fhir_id, "cancel", far.fhir_id), format="json"), 200
        )["status"]
        == "cancelled"
    )
    services.appointment_cancel(organization=org, appointment=near, actor="staff:a", by_staff=True)
    near.refresh_from_db()
    assert near.status == "cancelled"
