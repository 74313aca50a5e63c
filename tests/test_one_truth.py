"""One truth about a practitioner's time (docs/api.md, "One truth about a practitioner's time").

A slot is busy when anything occupies its occupant (the practitioner, across all their
schedules and roles): every path asks the one engine, and the database refuses what slips
past. These tests come from the outside in: the regressions that showed the old per-schedule
rule, a property over random clinics (what search shows free books, what it shows busy is
refused), and real concurrent requests against a live server.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from fhir_api.models import ApiClient
from scheduling.models import (
    INACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    AppointmentStatus,
    AuditEvent,
    Organization,
    PractitionerRole,
    Schedule,
    SlotStatus,
)
from tests.api_helpers import assert_bundle, assert_outcome, body, url
from tests.factories import (
    AppointmentFactory,
    OrganizationFactory,
    PatientFactory,
    PractitionerFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
    SlotFactory,
    _next_monday_9,
)
from tests.test_booking_concurrency import Race

FHIR = "application/fhir+json"


def _book_body(schedule: Schedule, start: datetime, role: PractitionerRole | None = None) -> Any:
    role = role or schedule.practitioner_role
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": start.isoformat()},
            {"name": "schedule", "valueString": schedule.fhir_id},
            {"name": "practitionerRole", "valueString": role.fhir_id},
            {"name": "status", "valueString": "booked"},
        ],
    }


def _book(api: APIClient, org: Organization, pid: str, schedule: Schedule, start: datetime) -> Any:
    return api.post(
        url(f"Patient/{pid}/Appointment/$book-slot", org.id),
        _book_body(schedule, start),
        format="json",
    )


def _slots(api: APIClient, org: Organization, schedules: list[Schedule], day: datetime) -> Any:
    # One schedule, or (the property test) every schedule of the example's organisation.
    only = f"schedule={schedules[0].fhir_id}&" if len(schedules) == 1 else ""
    lo, hi = day.isoformat(), (day + timedelta(days=3)).isoformat()
    query = f"Slot?{only}start=ge{lo}&start=lt{hi}&_count=500"
    return assert_bundle(api.get(url(query, org.id).replace("+", "%2B")))


def _statuses(bundle: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(schedule id, start) -> status of every slot in a search result."""
    out = {}
    for entry in bundle.get("entry", []):
        slot = entry["resource"]
        schedule_id = slot["schedule"]["reference"].split("/", 1)[1]
        out[(schedule_id, slot["start"])] = slot["status"]
    return out


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def overlapping_active_pairs() -> list[tuple[str, str]]:
    """Pairs of active plain appointments of one occupant, or one patient, that overlap:
    asked of the database directly, whatever the path that wrote them."""
    inactive = tuple(str(s) for s in INACTIVE_APPOINTMENT_STATUSES)
    marks = ", ".join(["%s"] * len(inactive))
    sql = f"""
        SELECT a.fhir_id, b.fhir_id FROM scheduling_appointment a
        JOIN scheduling_appointment b
          ON a.organization_id = b.organization_id AND a.id < b.id
         AND (a.occupant = b.occupant AND a.occupant <> '' AND a.seat = b.seat
              OR a.patient_id = b.patient_id)
         AND a.start < b."end" AND b.start < a."end"
        WHERE a.rrule = '' AND b.rrule = ''
          AND a.status NOT IN ({marks}) AND b.status NOT IN ({marks})
          AND NOT (a.status = 'pending' AND a.held_until IS NOT NULL AND a.held_until <= %s)
          AND NOT (b.status = 'pending' AND b.held_until IS NOT NULL AND b.held_until <= %s)
    """
    now = datetime.now(UTC)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*inactive, *inactive, now, now])
        return list(cursor.fetchall())


# --------------------------------------------------------------------------- regressions


@pytest.fixture
def two_schedules(org: Organization) -> tuple[Schedule, Schedule]:
    """A GP morning (15 min) and a vaccination morning (30 min) of one practitioner."""
    role = PractitionerRoleFactory(organization=org, fhir_id="gp-role")
    start = _next_monday_9() + timedelta(days=7)
    gp = ScheduleFactory(
        organization=org,
        fhir_id="gp-morning",
        practitioner_role=role,
        planning_start=start,
        planning_end=start + timedelta(hours=3),
        slot_minutes=15,
    )
    vaccination = ScheduleFactory(
        organization=org,
        fhir_id="vaccination-morning",
        practitioner_role=role,
        planning_start=start,
        planning_end=start + timedelta(hours=3),
        slot_minutes=30,
    )
    return gp, vaccination


def test_one_practitioner_two_schedules_books_once(
    api: APIClient, org: Organization, two_schedules: tuple[Schedule, Schedule]
) -> None:
    gp, vaccination = two_schedules
    first, second = PatientFactory(organization=org), PatientFactory(organization=org)
    at = gp.planning_start
    assert _book(api, org, first.fhir_id, gp, at).status_code == 201
    refused = assert_outcome(
        _book(api, org, second.fhir_id, vaccination, at), 409, contains="no longer free"
    )
    # The slot is named in the clinic's time with its offset (09:00 Amsterdam), not UTC.
    local = at.astimezone(ZoneInfo(org.timezone))
    offset = local.strftime("%z")
    named = f"The slot at {local:%Y-%m-%d %H:%M} ({offset[:3]}:{offset[3:]}) of schedule"
    assert refused["issue"][0]["diagnostics"].startswith(named)
    # Search of the other schedule shows the booked time busy, and the slot the booking
    # reaches into (the 30-minute slot covers the 15-minute booking) too.
    statuses = _statuses(_slots(api, org, [vaccination], at))
    assert statuses[(vaccination.fhir_id, at.isoformat())] == "busy"
    assert statuses[(vaccination.fhir_id, (at + timedelta(minutes=30)).isoformat())] == "free"
    # The 15-minute slot after the booking is still free on the GP schedule, but the
    # vaccination slot spanning it is not: booking 09:15 GP works, 09:00 vaccination does not.
    assert _book(api, org, second.fhir_id, gp, at + timedelta(minutes=15)).status_code == 201


def test_a_patient_is_never_in_two_places(
    api: APIClient, org: Organization, two_schedules: tuple[Schedule, Schedule]
) -> None:
    gp, _ = two_schedules
    other = ScheduleFactory(
        organization=org,
        fhir_id="other-doctor",
        planning_start=gp.planning_start,
        planning_end=gp.planning_end,
    )
    patient = PatientFactory(organization=org)
    at = gp.planning_start + timedelta(hours=1)
    assert _book(api, org, patient.fhir_id, gp, at).status_code == 201
    refused = assert_outcome(
        _book(api, org, patient.fhir_id, other, at),
        409,
        contains="patient already has an appointment at that time",
    )
    # The clash is written in the clinic's time with its offset, not in UTC.
    local = at.astimezone(ZoneInfo(org.timezone))
    offset = local.strftime("%z")
    expected = (
        f"({local:%Y-%m-%d %H:%M}-{local + timedelta(minutes=gp.slot_minutes):%H:%M} "
        f"({offset[:3]}:{offset[3:]}))"
    )
    diagnostics = refused["issue"][0]["diagnostics"]
    assert expected in diagnostics and "UTC" not in diagnostics
    # Another patient can take the other doctor's slot; the first patient a later one.
    assert _book(api, org, PatientFactory(organization=org).fhir_id, other, at).status_code == 201
    assert _book(api, org, patient.fhir_id, other, at + timedelta(minutes=15)).status_code == 201


def test_the_api_answers_in_english_whatever_the_accept_language(
    api: APIClient, org: Organization, two_schedules: tuple[Schedule, Schedule]
) -> None:
    # The admin speaks Dutch to a Dutch browser; the API's diagnostics stay English
    # (fhir_api.errors.outcome_for_exception), so clients can match on them.
    gp, other = two_schedules
    patient = PatientFactory(organization=org)
    at = gp.planning_start + timedelta(hours=1)
    assert _book(api, org, patient.fhir_id, gp, at).status_code == 201
    refused = api.post(
        url(f"Patient/{patient.fhir_id}/Appointment/$book-slot", org.id),
        _book_body(other, at),
        format="json",
        HTTP_ACCEPT_LANGUAGE="nl",
    )
    assert_outcome(refused, 409, contains="is no longer free: its practitioner is booked then")
    assert "tijdslot" not in refused.content.decode()


def test_an_occurrence_of_a_recurring_appointment_is_busy_and_refused(
    api: APIClient, org: Organization
) -> None:
    start = _next_monday_9() + timedelta(days=7)
    schedule = ScheduleFactory(
        organization=org,
        fhir_id="physio",
        planning_start=start,
        planning_end=start + timedelta(hours=3),
        rrule="FREQ=WEEKLY;COUNT=5",
        recurrence_timezone="UTC",
    )
    AppointmentFactory(
        organization=org,
        fhir_id="physio-weekly",
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        start=start + timedelta(hours=1),
        end=start + timedelta(hours=1, minutes=30),
        rrule="FREQ=WEEKLY;COUNT=4",
        recurrence_timezone="UTC",
    )
    week2 = start + timedelta(days=7, hours=1)
    statuses = _statuses(_slots(api, org, [schedule], week2 - timedelta(hours=1)))
    assert statuses[(schedule.fhir_id, week2.isoformat())] == "busy"
    assert statuses[(schedule.fhir_id, (week2 + timedelta(minutes=15)).isoformat())] == "busy"
    assert statuses[(schedule.fhir_id, (week2 + timedelta(minutes=30)).isoformat())] == "free"
    patient = PatientFactory(organization=org)
    for at in (week2, week2 + timedelta(minutes=15)):
        occurrence_id = f"physio-{start + timedelta(days=7):%Y%m%dT%H%M%SZ}"
        for schedule_id in (schedule.fhir_id, occurrence_id):
            response = api.post(
                url(f"Patient/{patient.fhir_id}/Appointment/$book-slot", org.id),
                {
                    **_book_body(schedule, at),
                    "parameter": [
                        p if p["name"] != "schedule" else {**p, "valueString": schedule_id}
                        for p in _book_body(schedule, at)["parameter"]
                    ],
                },
                format="json",
            )
            assert_outcome(response, 409)
    assert (
        _book(api, org, patient.fhir_id, schedule, week2 + timedelta(minutes=30)).status_code == 201
    )


def test_two_roles_of_one_practitioner_share_their_time(api: APIClient, org: Organization) -> None:
    doctor = PractitionerFactory(organization=org)
    gp_role = PractitionerRoleFactory(organization=org, practitioner=doctor)
    travel_role = PractitionerRoleFactory(organization=org, practitioner=doctor)
    start = _next_monday_9() + timedelta(days=7)
    gp = ScheduleFactory(organization=org, practitioner_role=gp_role, planning_start=start)
    travel = ScheduleFactory(
        organization=org, practitioner_role=travel_role, planning_start=start, slot_minutes=20
    )
    assert (
        _book(api, org, PatientFactory(organization=org).fhir_id, travel, start).status_code == 201
    )
    for at in (start, start + timedelta(minutes=15)):
        assert_outcome(_book(api, org, PatientFactory(organization=org).fhir_id, gp, at), 409)
    later = start + timedelta(minutes=30)
    assert _book(api, org, PatientFactory(organization=org).fhir_id, gp, later).status_code == 201


def test_blocked_time_of_one_schedule_blocks_the_person_on_all(
    api: APIClient, org: Organization, two_schedules: tuple[Schedule, Schedule]
) -> None:
    gp, vaccination = two_schedules
    SlotFactory(
        organization=org,
        schedule=gp,
        status=SlotStatus.BUSY_UNAVAILABLE,
        start=gp.planning_start + timedelta(hours=2),
        end=gp.planning_start + timedelta(hours=3),
    )
    at = vaccination.planning_start + timedelta(hours=2, minutes=30)
    statuses = _statuses(_slots(api, org, [vaccination], vaccination.planning_start))
    assert statuses[(vaccination.fhir_id, at.isoformat())] == "busy"
    assert_outcome(_book(api, org, PatientFactory(organization=org).fhir_id, vaccination, at), 409)


def test_a_lapsed_hold_occupies_nothing_and_a_live_one_is_tentative(
    api: APIClient, org: Organization, two_schedules: tuple[Schedule, Schedule]
) -> None:
    gp, _ = two_schedules
    now = datetime.now(UTC)
    live, lapsed = gp.planning_start, gp.planning_start + timedelta(minutes=15)
    for start, until in ((live, now + timedelta(hours=1)), (lapsed, now - timedelta(minutes=1))):
        AppointmentFactory(
            organization=org,
            schedule=gp,
            practitioner_role=gp.practitioner_role,
            status=AppointmentStatus.PENDING,
            start=start,
            end=start + timedelta(minutes=15),
            held_until=until,
        )
    statuses = _statuses(_slots(api, org, [gp], gp.planning_start))
    assert statuses[(gp.fhir_id, live.isoformat())] == "busy-tentative"
    assert statuses[(gp.fhir_id, lapsed.isoformat())] == "free"
    assert_outcome(_book(api, org, PatientFactory(organization=org).fhir_id, gp, live), 409)
    # Booking over the lapsed hold tidies it in the same transaction (the database
    # constraints cannot see the clock) and succeeds.
    assert _book(api, org, PatientFactory(organization=org).fhir_id, gp, lapsed).status_code == 201
    tidied = Appointment.objects.get(start=lapsed, status=AppointmentStatus.CANCELLED)
    assert tidied.cancelation_reason == "hold expired"
    assert not overlapping_active_pairs()


# --------------------------------------------------------------------------- property

EXAMPLES = int(os.environ.get("MEDIKIT_PROPERTY_EXAMPLES", "25"))
_EXAMPLE = iter(range(10**9))


@st.composite
def clinics(draw: st.DrawFn) -> dict[str, Any]:
    """A practitioner (one or two roles) with 1-3 possibly overlapping schedules, and what
    already occupies them: plain and recurring appointments, blocks, holds, stored slots."""
    n_roles = draw(st.integers(1, 2))
    schedules = []
    for _ in range(draw(st.integers(1, 3))):
        schedules.append(
            {
                "role": draw(st.integers(0, n_roles - 1)),
                "offset": draw(st.sampled_from([0, 0, 5, 10, 15, 30, 45, 60])),
                "hours": draw(st.integers(1, 3)),
                "minutes": draw(st.sampled_from([10, 15, 20, 30])),
                "daily": draw(st.booleans()),
                # Booking rules: buffers, group slots, and an advance window that ends
                # somewhere among the slots (they lie 14 to 17 days ahead).
                "before": draw(st.sampled_from([None, None, 5, 10])),
                "after": draw(st.sampled_from([None, None, 5, 15])),
                "capacity": draw(st.sampled_from([None, None, None, 2, 3])),
                "advance": draw(st.sampled_from([None, None, None, 15, 16])),
            }
        )
    span = st.tuples(st.integers(0, 4 * 60 // 5), st.sampled_from([10, 15, 20, 30, 45]))
    return {
        "roles": n_roles,
        "schedules": schedules,
        "appointments": draw(st.lists(span, max_size=3)),
        "recurring": draw(st.lists(span, max_size=1)),
        "blocks": draw(st.lists(st.tuples(st.integers(0, 2), span), max_size=2)),
        "holds": draw(st.lists(st.tuples(span, st.booleans()), max_size=2)),
        "stored": draw(st.lists(st.tuples(st.integers(0, 2), span), max_size=2)),
        "order": draw(st.randoms(use_true_random=False)),
    }


def _build(spec: dict[str, Any], make_api_client: Callable[..., Any]) -> Any:
    org = OrganizationFactory(id=f"prop-{next(_EXAMPLE)}", timezone="UTC")
    _, token = make_api_client(org)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    doctor = PractitionerFactory(organization=org)
    roles = [
        PractitionerRoleFactory(organization=org, practitioner=doctor) for _ in range(spec["roles"])
    ]
    day = _next_monday_9() + timedelta(days=14)
    schedules = [
        ScheduleFactory(
            organization=org,
            practitioner_role=roles[s["role"]],
            planning_start=day + timedelta(minutes=s["offset"]),
            planning_end=day + timedelta(minutes=s["offset"], hours=s["hours"]),
            slot_minutes=s["minutes"],
            rrule="FREQ=DAILY;COUNT=2" if s["daily"] else "",
            recurrence_timezone="UTC" if s["daily"] else "",
            buffer_before_minutes=s["before"],
            buffer_after_minutes=s["after"],
            capacity=s["capacity"],
            maximum_advance_days=s["advance"],
        )
        for s in spec["schedules"]
    ]
    taken: list[tuple[datetime, datetime]] = []

    def free_span(span: tuple[int, int]) -> tuple[datetime, datetime] | None:
        start = day + timedelta(minutes=5 * span[0])
        end = start + timedelta(minutes=span[1])
        # What exists already never overlaps itself (buffers included, up to 25 minutes):
        # the database would refuse it.
        pad = timedelta(minutes=25)
        if any(start - pad < e and s < end + pad for s, e in taken):
            return None
        taken.append((start, end))
        return start, end

    for span in spec["appointments"]:
        if (found := free_span(span)) is not None:
            AppointmentFactory(
                organization=org,
                practitioner_role=random.Random(span[0]).choice(roles),
                start=found[0],
                end=found[1],
            )
    for span in spec["recurring"]:
        start = day + timedelta(minutes=5 * span[0])
        AppointmentFactory(
            organization=org,
            schedule=schedules[0],
            practitioner_role=schedules[0].practitioner_role,
            start=start,
            end=start + timedelta(minutes=span[1]),
            rrule="FREQ=DAILY;COUNT=3",
            recurrence_timezone="UTC",
        )
    for index, span in spec["blocks"]:
        start = day + timedelta(minutes=5 * span[0])
        SlotFactory(
            organization=org,
            schedule=schedules[index % len(schedules)],
            status=SlotStatus.BUSY_UNAVAILABLE,
            start=start,
            end=start + timedelta(minutes=span[1]),
        )
    now = datetime.now(UTC)
    for span, live in spec["holds"]:
        if free_span(span) is not None:
            start = day + timedelta(minutes=5 * span[0])
            AppointmentFactory(
                organization=org,
                schedule=schedules[0],
                practitioner_role=schedules[0].practitioner_role,
                status=AppointmentStatus.PENDING,
                start=start,
                end=start + timedelta(minutes=span[1]),
                held_until=now + (timedelta(hours=2) if live else -timedelta(seconds=1)),
            )
    for index, span in spec["stored"]:
        schedule = schedules[index % len(schedules)]
        start = schedule.planning_start + timedelta(minutes=5 * span[0])
        SlotFactory(
            organization=org,
            schedule=schedule,
            start=start,
            end=start + timedelta(minutes=span[1]),
        )
    return org, api, schedules, day


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=clinics())
def test_what_search_shows_free_books_and_what_it_shows_busy_is_refused(
    db: Any, make_api_client: Callable[..., tuple[ApiClient, str]], spec: dict[str, Any]
) -> None:
    org, api, schedules, day = _build(spec, make_api_client)
    by_id = {s.fhir_id: s for s in schedules}
    assert Schedule.objects.filter(organization=org).count() >= len(schedules)
    first = _statuses(_slots(api, org, [*schedules, *schedules], day))
    candidates = list(first)
    spec["order"].shuffle(candidates)
    booked = 0
    for key in candidates:
        schedule_id, start = key
        # A group slot stays free until full: book it while search says free (bounded).
        for _ in range(by_id[schedule_id].seats + 1):
            now_status = _statuses(_slots(api, org, [*schedules, *schedules], day)).get(key)
            if now_status is None:
                break  # only a stored slot could vanish, and stored slots do not
            response = _book(
                api, org, PatientFactory(organization=org).fhir_id, by_id[schedule_id], _at(start)
            )
            if now_status == "free":
                assert response.status_code == 201, (key, body(response))
                booked += 1
                continue
            # Busy: taken (409), or out of reach of a clock rule (422 naming it).
            assert response.status_code in (409, 422), (key, now_status, body(response))
            if response.status_code == 422:
                assert "maximumAdvance" in body(response)["issue"][0]["diagnostics"]
            break
    assert not overlapping_active_pairs()
    # Nothing free is left: every free slot was either booked or became busy.
    assert "free" not in _statuses(_slots(api, org, [*schedules, *schedules], day)).values()
    # Every 201 wrote its AuditEvent, and nothing else did.
    assert booked == AuditEvent.objects.filter(organization=org, action="created").count()


# --------------------------------------------------------------------------- concurrency


def _race_rounds(
    live_server: Any,
    make_api_client: Callable[..., tuple[ApiClient, str]],
    *,
    rounds: int,
    size: int,
    two_roles: bool,
) -> None:
    """Each round: ``size`` simultaneous bookings of the same time, spread over two schedules
    (of one role, or of two roles) of one practitioner. Exactly one may win."""
    org = OrganizationFactory(id=f"race-{'roles' if two_roles else 'schedules'}")
    doctor = PractitionerFactory(organization=org)
    role_a = PractitionerRoleFactory(organization=org, practitioner=doctor)
    role_b = PractitionerRoleFactory(organization=org, practitioner=doctor) if two_roles else role_a
    start = _next_monday_9() + timedelta(days=7)
    length = timedelta(minutes=30 * (rounds + 1))
    a = ScheduleFactory(
        organization=org,
        practitioner_role=role_a,
        planning_start=start,
        planning_end=start + length,
        slot_minutes=15,
    )
    b = ScheduleFactory(
        organization=org,
        practitioner_role=role_b,
        planning_start=start,
        planning_end=start + length,
        slot_minutes=30,
    )
    patients = [PatientFactory(organization=org).fhir_id for _ in range(size)]
    _, token = make_api_client(org)
    race = Race(live_server.url, token, size)
    path = f"/v2/{org.id}/fhir/R4/Patient/{{pid}}/Appointment/$book-slot"
    try:
        for index in range(rounds):
            at = start + timedelta(minutes=30 * index)
            batch = []
            for n, pid in enumerate(patients):
                schedule = (a, b)[n % 2]
                # The 15-minute schedule's requests go for either half of the 30 minutes.
                when = at + timedelta(minutes=15) if schedule is a and n % 4 == 2 else at
                batch.append((path.format(pid=pid), _book_body(schedule, when), {}))
            results = race.fire(batch)
            statuses = Counter(status for status, _ in results)
            assert not [r for r in results if r[0] not in (201, 409)], results[:3]
            # Two 15-minute bookings can share the half hour; anything else is one winner.
            wins = [
                (batch[i][1]["parameter"][0]["valueDateTime"], batch[i][1]["parameter"][1])
                for i, (status, _) in enumerate(results)
                if status == 201
            ]
            assert 1 <= statuses[201] <= 2, (index, statuses)
            if statuses[201] == 2:
                assert {w[1]["valueString"] for w in wins} == {a.fhir_id}, wins
                assert len({w[0] for w in wins}) == 2, wins
    finally:
        race.close()
    assert not overlapping_active_pairs()
    assert (
        Appointment.objects.filter(organization=org)
        .exclude(status__in=INACTIVE_APPOINTMENT_STATUSES)
        .count()
        >= rounds
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("two_roles", [False, True], ids=["two-schedules", "two-roles"])
def test_concurrent_bookings_of_one_practitioner_postgres(
    live_server: Any, make_api_client: Callable[..., tuple[ApiClient, str]], two_roles: bool
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    _race_rounds(live_server, make_api_client, rounds=100, size=16, two_roles=two_roles)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("two_roles", [False, True], ids=["two-schedules", "two-roles"])
def test_concurrent_bookings_of_one_practitioner(
    live_server: Any, make_api_client: Callable[..., tuple[ApiClient, str]], two_roles: bool
) -> None:
    _race_rounds(live_server, make_api_client, rounds=10, size=8, two_roles=two_roles)
