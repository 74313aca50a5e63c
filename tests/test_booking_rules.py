"""Booking rules per schedule, each at its boundary (docs/api.md, "Booking rules").

The clock is a parameter: each rule is tried one minute inside and one minute outside its
boundary, through Slot search and through booking, and the two must agree: a slot is
offered exactly when it can be booked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from fhir_api.models import ApiClient
from scheduling import selectors, services
from scheduling.errors import BusinessRuleViolation, SlotTaken
from scheduling.models import Appointment, Organization, Patient, Schedule
from scheduling.recurrence import Period
from tests.factories import (
    OrganizationFactory,
    PatientFactory,
    ScheduleFactory,
    _next_monday_9,
)
from tests.test_booking_concurrency import Race
from tests.test_one_truth import _book_body, overlapping_active_pairs

MINUTE = timedelta(minutes=1)


def _status(org: Organization, schedule: Schedule, start: datetime, now: datetime) -> str:
    window = Period(schedule.planning_start, schedule.planning_end)
    results = selectors.slot_search(
        organization=org, window=window, schedule_ids=[schedule.fhir_id], now=now
    )
    found = {r.start: r.status for r in results[: len(results)]}
    return found[start]


def _book(
    org: Organization, schedule: Schedule, start: datetime, now: datetime, patient: Patient | None
) -> Appointment:
    return services.appointment_book(
        organization=org,
        patient=patient or PatientFactory(organization=org),
        schedule_id=schedule.fhir_id,
        start=start,
        practitioner_role_id=schedule.practitioner_role.fhir_id,
        status="booked",
        comment="",
        actor="test",
        now=now,
    ).appointment


def _offered_exactly_when_bookable(
    org: Organization, schedule: Schedule, start: datetime, now: datetime, rule: str
) -> bool:
    """Search and booking at ``now`` agree on the slot at ``start``; returns whether it was
    offered (and booked)."""
    offered = _status(org, schedule, start, now) == "free"
    if offered:
        _book(org, schedule, start, now, None)
    else:
        with pytest.raises(BusinessRuleViolation) as refused:
            _book(org, schedule, start, now, None)
        assert rule in refused.value.message
    return offered


@pytest.fixture
def day() -> datetime:
    return _next_monday_9() + timedelta(days=14)


@pytest.mark.django_db
def test_minimum_notice_at_its_boundary(org: Organization, day: datetime) -> None:
    schedule = ScheduleFactory(organization=org, planning_start=day, minimum_notice_minutes=120)
    first, second = day, day + timedelta(minutes=15)
    inside = first - timedelta(minutes=120) - MINUTE  # just far enough ahead
    assert _offered_exactly_when_bookable(org, schedule, first, inside, "minimumNotice")
    outside = second - timedelta(minutes=120) + MINUTE  # one minute too late
    assert not _offered_exactly_when_bookable(org, schedule, second, outside, "minimumNotice")


@pytest.mark.django_db
def test_maximum_advance_at_its_boundary(org: Organization, day: datetime) -> None:
    schedule = ScheduleFactory(organization=org, planning_start=day, maximum_advance_days=7)
    first, second = day, day + timedelta(minutes=15)
    inside = first - timedelta(days=7) + MINUTE
    assert _offered_exactly_when_bookable(org, schedule, first, inside, "maximumAdvance")
    outside = second - timedelta(days=7) - MINUTE
    assert not _offered_exactly_when_bookable(org, schedule, second, outside, "maximumAdvance")


@pytest.mark.django_db
def test_buffers_keep_time_around_each_booking(org: Organization, day: datetime) -> None:
    schedule = ScheduleFactory(
        organization=org,
        planning_start=day,
        buffer_before_minutes=5,
        buffer_after_minutes=10,
    )
    now = day - timedelta(days=1)
    at = day + timedelta(hours=1)
    _book(org, schedule, at, now, None)
    slot = timedelta(minutes=15)
    expected = {
        at - 2 * slot: "free",  # 09:30-09:45 + 10 after reaches 09:55 < 09:55 (its 5 before)
        at - slot: "busy",  # its 10-minute after-buffer runs into the booking
        at: "busy",  # the booking
        at + slot: "busy",  # the booking's after-buffer (until 10:25)
        at + 2 * slot: "free",  # 10:30 - 5 before = 10:25: touching, not overlapping
    }
    for start, status in expected.items():
        assert _status(org, schedule, start, now) == status, start
    with pytest.raises(SlotTaken):
        _book(org, schedule, at + slot, now, None)
    _book(org, schedule, at + 2 * slot, now, None)
    assert not overlapping_active_pairs()


@pytest.mark.django_db
def test_buffers_of_one_schedule_count_on_the_others(org: Organization, day: datetime) -> None:
    cleaning = ScheduleFactory(organization=org, planning_start=day, buffer_after_minutes=15)
    plain = ScheduleFactory(
        organization=org, planning_start=day, practitioner_role=cleaning.practitioner_role
    )
    now = day - timedelta(days=1)
    _book(org, cleaning, day, now, None)
    assert _status(org, plain, day + timedelta(minutes=15), now) == "busy"
    assert _status(org, plain, day + timedelta(minutes=30), now) == "free"


@pytest.mark.django_db
def test_capacity_keeps_a_slot_free_until_full(org: Organization, day: datetime) -> None:
    schedule = ScheduleFactory(organization=org, planning_start=day, capacity=3)
    now = day - timedelta(days=1)
    booked = []
    for _ in range(3):
        assert _status(org, schedule, day, now) == "free"
        booked.append(_book(org, schedule, day, now, None))
    assert sorted(a.seat for a in booked) == [0, 1, 2]
    assert _status(org, schedule, day, now) == "busy"
    with pytest.raises(SlotTaken):
        _book(org, schedule, day, now, None)
    # One cancels: a seat opens again, and the next booking takes it.
    services.appointment_cancel(organization=org, appointment=booked[1], actor="test")
    assert _status(org, schedule, day, now) == "free"
    assert _book(org, schedule, day, now, None).seat == 1
    # The group session occupies its practitioner: the next slot is free, an overlapping
    # slot of another schedule of the same practitioner is not.
    other = ScheduleFactory(
        organization=org,
        planning_start=day,
        practitioner_role=schedule.practitioner_role,
        slot_minutes=30,
    )
    assert _status(org, other, day, now) == "busy"


@pytest.mark.django_db
def test_max_active_per_patient(org: Organization, day: datetime) -> None:
    schedule = ScheduleFactory(organization=org, planning_start=day, max_active_per_patient=2)
    now = day - timedelta(days=1)
    patient = PatientFactory(organization=org)
    first = _book(org, schedule, day, now, patient)
    _book(org, schedule, day + timedelta(minutes=15), now, patient)
    with pytest.raises(BusinessRuleViolation) as refused:
        _book(org, schedule, day + timedelta(minutes=30), now, patient)
    assert "maxActivePerPatient" in refused.value.message
    # Another patient is not held to this one's count; a cancelled booking frees the count.
    _book(org, schedule, day + timedelta(minutes=45), now, None)
    services.appointment_cancel(organization=org, appointment=first, actor="test")
    _book(org, schedule, day + timedelta(minutes=30), now, patient)


@pytest.mark.django_db
def test_cancellation_cutoff_binds_patients_not_staff(org: Organization, day: datetime) -> None:
    schedule = ScheduleFactory(organization=org, planning_start=day, cancellation_cutoff_hours=24)
    appointment = _book(org, schedule, day, day - timedelta(days=3), None)
    later = day + timedelta(minutes=15)

    def move(now: datetime, *, staff: bool = False) -> Appointment:
        return services.appointment_reschedule(
            organization=org,
            appointment=appointment,
            start=later if appointment.start == day else day,
            actor="test",
            now=now,
            staff=staff,
        )

    with pytest.raises(BusinessRuleViolation) as refused:
        move(day - timedelta(hours=24) + MINUTE)
    assert "cancellationCutoff" in refused.value.message
    appointment = move(day - timedelta(hours=24) - MINUTE)
    assert appointment.start == later
    # Staff are not held to it.
    appointment = move(later - timedelta(hours=1), staff=True)
    assert appointment.start == day


# --------------------------------------------------------------------------- concurrency


def _capacity_rounds(
    live_server: Any,
    make_api_client: Callable[..., tuple[ApiClient, str]],
    *,
    rounds: int,
    size: int,
) -> None:
    org = OrganizationFactory(id="group-clinic")
    start = _next_monday_9() + timedelta(days=7)
    schedule = ScheduleFactory(
        organization=org,
        planning_start=start,
        planning_end=start + timedelta(minutes=15 * (rounds + 1)),
        capacity=3,
    )
    patients = [PatientFactory(organization=org).fhir_id for _ in range(size)]
    _, token = make_api_client(org)
    race = Race(live_server.url, token, size)
    path = f"/v2/{org.id}/fhir/R4/Patient/{{pid}}/Appointment/$book-slot"
    try:
        for index in range(rounds):
            at = start + timedelta(minutes=15 * index)
            results = race.fire(
                [(path.format(pid=pid), _book_body(schedule, at), {}) for pid in patients]
            )
            statuses = Counter(status for status, _ in results)
            assert statuses == {201: 3, 409: size - 3}, (index, statuses, results[:2])
            seats = sorted(
                Appointment.objects.filter(schedule=schedule, start=at).values_list(
                    "seat", flat=True
                )
            )
            assert seats == [0, 1, 2], (index, seats)
    finally:
        race.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_capacity_under_concurrency_postgres(
    live_server: Any, make_api_client: Callable[..., tuple[ApiClient, str]]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    _capacity_rounds(live_server, make_api_client, rounds=50, size=10)


@pytest.mark.django_db(transaction=True)
def test_capacity_under_concurrency(
    live_server: Any, make_api_client: Callable[..., tuple[ApiClient, str]]
) -> None:
    _capacity_rounds(live_server, make_api_client, rounds=5, size=6)


# --------------------------------------------------------------------------- wire form

RULES_EXTENSION = {
    "url": "urn:extension:booking-rules",
    "extension": [
        {
            "url": "minimumNotice",
            "valueDuration": {
                "value": 120,
                "unit": "min",
                "system": "http://unitsofmeasure.org",
                "code": "min",
            },
        },
        {
            "url": "maximumAdvance",
            "valueDuration": {
                "value": 60,
                "unit": "d",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            },
        },
        {
            "url": "bufferAfter",
            "valueDuration": {
                "value": 10,
                "unit": "min",
                "system": "http://unitsofmeasure.org",
                "code": "min",
            },
        },
        {"url": "capacity", "valuePositiveInt": 3},
        {
            "url": "cancellationCutoff",
            "valueDuration": {
                "value": 24,
                "unit": "h",
                "system": "http://unitsofmeasure.org",
                "code": "h",
            },
        },
        {"url": "maxActivePerPatient", "valuePositiveInt": 2},
    ],
}


def _bundle(extension: Any) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "PractitionerRole", "id": "role-1"}},
            {
                "resource": {
                    "resourceType": "Schedule",
                    "id": "group",
                    "actor": [{"reference": "PractitionerRole/role-1"}],
                    "planningHorizon": {
                        "start": "2027-03-01T09:00:00+01:00",
                        "end": "2027-03-01T12:00:00+01:00",
                    },
                    "extension": [extension],
                }
            },
        ],
    }


@pytest.mark.django_db
def test_rules_round_trip_through_import_export_and_reads(org: Organization, api: Any) -> None:
    from fhir.resources.R4B.schedule import Schedule as FhirSchedule

    from fhir_api.ingest import bundle_import
    from tests.test_import_export import export

    bundle_import(organization=org, data=_bundle(RULES_EXTENSION))
    schedule = Schedule.objects.get(organization=org, fhir_id="group")
    assert (schedule.minimum_notice_minutes, schedule.maximum_advance_days) == (120, 60)
    assert (schedule.buffer_before_minutes, schedule.buffer_after_minutes) == (None, 10)
    assert (schedule.capacity, schedule.cancellation_cutoff_hours) == (3, 24)
    assert schedule.max_active_per_patient == 2
    exported = next(
        e["resource"] for e in export(org)["entry"] if e["resource"]["resourceType"] == "Schedule"
    )
    assert RULES_EXTENSION in exported["extension"]
    read = api.get(f"/v2/{org.id}/fhir/R4/Schedule/group").json()
    FhirSchedule.model_validate(read)
    assert RULES_EXTENSION in read["extension"]
    found = api.get(f"/v2/{org.id}/fhir/R4/Schedule?date=2027-03-01").json()
    assert RULES_EXTENSION in found["entry"][0]["resource"]["extension"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ({"url": "capacity", "valuePositiveInt": 0}, "greater than or equal to 1"),
        ({"url": "seatsPerRow", "valuePositiveInt": 3}, "unknown booking rule"),
        (
            {
                "url": "bufferBefore",
                "valueDuration": {"value": -5, "unit": "min", "code": "min"},
            },
            "must be positive",
        ),
        (
            {"url": "bufferAfter", "valueDuration": {"value": 9, "unit": "h", "code": "h"}},
            "more than the 240 allowed",
        ),
        (
            {"url": "maximumAdvance", "valueDuration": {"value": 36, "unit": "h", "code": "h"}},
            "whole number of d",
        ),
        ({"url": "capacity"}, "needs a valuePositiveInt"),
    ],
)
def test_nonsense_rules_are_refused_on_import_naming_the_entry(
    org: Organization, part: dict[str, Any], expected: str
) -> None:
    from fhir_api.ingest import bundle_import
    from scheduling.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        bundle_import(
            organization=org,
            data=_bundle({"url": "urn:extension:booking-rules", "extension": [part]}),
        )
    message = refused.value.message
    assert message.startswith("entry 2 (Schedule/group):"), message
    assert expected in message, message
    assert not Schedule.objects.filter(organization=org).exists()


@pytest.mark.django_db
def test_a_lapsed_holds_buffer_does_not_block_the_next_slot(
    org: Organization, day: datetime
) -> None:
    """Found by the one-truth property on PostgreSQL: a lapsed hold whose after-buffer
    reaches into the next slot is free by the engine, so booking it must tidy that hold
    too (the exclusion constraint compares occupied ranges and cannot see the clock)."""
    from scheduling.models import AppointmentStatus
    from tests.factories import AppointmentFactory

    schedule = ScheduleFactory(organization=org, planning_start=day, buffer_after_minutes=5)
    now = day - timedelta(days=1)
    AppointmentFactory(
        organization=org,
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        status=AppointmentStatus.PENDING,
        start=day,
        end=day + timedelta(minutes=15),
        held_until=now - timedelta(minutes=1),
    )
    at = day + timedelta(minutes=15)
    assert _status(org, schedule, at, now) == "free"
    _book(org, schedule, at, now, None)
    assert not overlapping_active_pairs()
