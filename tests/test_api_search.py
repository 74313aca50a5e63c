"""Schedule, Slot and Appointment searches and reads through the API (docs/api.md sections 2-6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B.appointment import Appointment as R4BAppointment
from fhir.resources.R4B.schedule import Schedule as R4BSchedule
from fhir.resources.R4B.slot import Slot as R4BSlot
from fhirclient.models.appointment import Appointment as FCAppointment
from fhirclient.models.schedule import Schedule as FCSchedule
from fhirclient.models.slot import Slot as FCSlot

from scheduling.models import AppointmentStatus, SlotStatus
from tests.api_helpers import assert_bundle, assert_outcome, body, ids, url
from tests.factories import (
    AppointmentFactory,
    PatientFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
    SlotFactory,
)

AMS = ZoneInfo("Europe/Amsterdam")
pytestmark = pytest.mark.django_db


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


@pytest.fixture
def daily(org: Any) -> Any:
    """A daily 09:00-10:00 Amsterdam schedule that began on 1 January 2026."""
    return ScheduleFactory(
        organization=org,
        fhir_id="daily",
        planning_start=ams(2026, 1, 1, 9),
        planning_end=ams(2026, 1, 1, 10),
        rrule="FREQ=DAILY",
        slot_minutes=30,
    )


def occurrence_days(bundle: dict[str, Any]) -> list[str]:
    return [
        datetime.fromisoformat(e["resource"]["planningHorizon"]["start"])
        .astimezone(AMS)
        .date()
        .isoformat()
        for e in bundle.get("entry", [])
    ]


# docs/api.md section 5, row by row: the days whose 09:00 occurrence falls in the window.
WINDOW_TABLE = [
    (["2026-06-01"], ["2026-06-01"]),
    (["eq2026-06-01"], ["2026-06-01"]),
    # ge alone is ge2026-06-01&le2026-06-08, and le includes its whole day: eight days.
    (["ge2026-06-01"], [f"2026-06-0{d}" for d in range(1, 9)]),
    (["gt2026-06-01"], [f"2026-06-0{d}" for d in range(1, 9)]),
    # le includes the named day; 7 days back from its start.
    (["le2026-06-01"], [f"2026-05-{d}" for d in range(25, 32)] + ["2026-06-01"]),
    (["lt2026-06-01"], [f"2026-05-{d}" for d in range(25, 32)]),
    (["ge2026-06-01", "le2026-06-30"], [f"2026-06-{d:02d}" for d in range(1, 31)]),
    (["ge2026-06-01", "lt2026-06-30"], [f"2026-06-{d:02d}" for d in range(1, 30)]),
    (["2026-06"], [f"2026-06-{d:02d}" for d in range(1, 31)]),
    (["ge2026-06-01T09:30:00+02:00", "le2026-06-02T12:00:00+02:00"], ["2026-06-01", "2026-06-02"]),
    # A zone-less dateTime in a date search is read in the organisation's zone.
    (["ge2026-06-03T10:00:00", "lt2026-06-05T09:00:00"], ["2026-06-04"]),
]


@pytest.mark.parametrize(("values", "days"), WINDOW_TABLE)
def test_schedule_date_window_table(
    api: Any, daily: Any, values: list[str], days: list[str]
) -> None:
    query = "&".join(f"date={v.replace('+', '%2B')}" for v in values)
    bundle = assert_bundle(api.get(url(f"Schedule?{query}&_count=500")))
    assert occurrence_days(bundle) == days
    assert bundle["total"] == len(days)


def test_occurrence_shape(api: Any, daily: Any) -> None:
    bundle = assert_bundle(api.get(url("Schedule?date=2026-06-01")))
    resource = bundle["entry"][0]["resource"]
    assert resource["id"] == "daily-20260601T070000Z"
    assert resource["planningHorizon"] == {
        "start": "2026-06-01T07:00:00+00:00",
        "end": "2026-06-01T08:00:00+00:00",
    }
    urls = [e["url"] for e in resource["extension"]]
    assert "urn:extension:recurrence" not in urls
    assert {
        "url": "urn:extension:parent:schedule",
        "valueReference": {"reference": "Schedule/daily"},
    } in resource["extension"]
    R4BSchedule.model_validate(resource)
    FCSchedule(resource)


def test_without_window_recurring_parent_is_returned_with_its_rule(api: Any, daily: Any) -> None:
    bundle = assert_bundle(api.get(url("Schedule")))
    (resource,) = [e["resource"] for e in bundle["entry"]]
    assert resource["id"] == "daily"
    rec = next(e for e in resource["extension"] if e["url"] == "urn:extension:recurrence")
    assert {"url": "timezone", "valueCode": "Europe/Amsterdam"} in rec["extension"]
    assert {"url": "rrule", "valueString": "FREQ=DAILY"} in rec["extension"]


def test_exdate_is_written_out_and_left_out(api: Any, daily: Any) -> None:
    daily.exdates = ["2026-06-02T09:00:00+02:00"]
    daily.save()
    bundle = assert_bundle(api.get(url("Schedule?date=ge2026-06-01&date=le2026-06-03")))
    assert occurrence_days(bundle) == ["2026-06-01", "2026-06-03"]
    parent = body(api.get(url("Schedule/daily")))
    rec = next(e for e in parent["extension"] if e["url"] == "urn:extension:recurrence")
    assert {"url": "exdate", "valueDateTime": "2026-06-02T09:00:00+02:00"} in rec["extension"]


@pytest.mark.parametrize(
    ("window", "expected_utc"),
    [
        # 29 March 2026: CET -> CEST; 09:00 local stays 09:00 (08:00Z then 07:00Z).
        ("ge2026-03-23&date=lt2026-04-06", ["08", "08", "07", "07"]),
        # 25 October 2026: CEST -> CET; 07:00Z then 08:00Z.
        ("ge2026-10-19&date=lt2026-11-02", ["07", "07", "08", "08"]),
    ],
)
def test_weekly_schedule_keeps_local_time_across_dst(
    api: Any, org: Any, window: str, expected_utc: list[str]
) -> None:
    ScheduleFactory(
        organization=org,
        fhir_id="weekly",
        planning_start=ams(2026, 3, 2, 9),
        planning_end=ams(2026, 3, 2, 12),
        rrule="FREQ=WEEKLY;BYDAY=MO,FR",
    )
    bundle = assert_bundle(api.get(url(f"Schedule?date={window}")))
    starts = [
        datetime.fromisoformat(e["resource"]["planningHorizon"]["start"]) for e in bundle["entry"]
    ]
    assert all(s.astimezone(AMS).hour == 9 for s in starts)
    assert [f"{s.astimezone(UTC):%H}" for s in starts] == expected_utc


def test_generated_occurrence_read_is_404_naming_parent(api: Any, daily: Any) -> None:
    assert_outcome(api.get(url("Schedule/daily-20260601T070000Z")), 404, contains="Schedule/daily")
    assert_outcome(api.get(url("Schedule/nope")), 404, contains="'nope' was not found")


def test_id_search_matches_occurrence_id_with_window(api: Any, daily: Any) -> None:
    bundle = assert_bundle(api.get(url("Schedule?_id=daily-20260602T070000Z&date=ge2026-06-01")))
    assert ids(bundle) == ["daily-20260602T070000Z"]
    bundle = assert_bundle(api.get(url("Schedule?id=daily")))
    assert ids(bundle) == ["daily"]


@pytest.fixture
def categorized(org: Any) -> dict[str, Any]:
    start = ams(2026, 6, 1, 9)
    return {
        "gp": ScheduleFactory(
            organization=org,
            fhir_id="gp",
            planning_start=start,
            planning_end=start + timedelta(hours=1),
            service_category=[{"system": "http://x/cat", "code": "gp"}],
        ),
        "nosys": ScheduleFactory(
            organization=org,
            fhir_id="nosys",
            planning_start=start,
            planning_end=start + timedelta(hours=1),
            service_category=[{"code": "gp"}],
        ),
        "dent": ScheduleFactory(
            organization=org,
            fhir_id="dent",
            planning_start=start,
            planning_end=start + timedelta(hours=1),
            service_category=[{"system": "http://y/cat", "code": "dental"}],
        ),
    }


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("gp", ["dent", "gp", "nosys"][1:]),
        ("http://x/cat|gp", ["gp"]),
        ("|gp", ["nosys"]),
        ("http://y/cat|gp", []),
        ("gp,dental", ["dent", "gp", "nosys"]),
        ("http://y/cat|dental,|gp", ["dent", "nosys"]),
    ],
)
def test_service_category_token_forms(
    api: Any, categorized: dict[str, Any], token: str, expected: list[str]
) -> None:
    bundle = assert_bundle(api.get(url("Schedule"), {"service-category": token}))
    assert sorted(ids(bundle)) == expected


def test_schedule_actor_and_active(api: Any, org: Any) -> None:
    role = PractitionerRoleFactory(organization=org, fhir_id="dr-role")
    a = ScheduleFactory(
        organization=org, fhir_id="a", practitioner_role=role, practitioner=role.practitioner
    )
    ScheduleFactory(organization=org, fhir_id="b", active=False)
    assert ids(assert_bundle(api.get(url("Schedule?actor=PractitionerRole/dr-role")))) == ["a"]
    prac = role.practitioner.fhir_id
    assert ids(assert_bundle(api.get(url(f"Schedule?actor=Practitioner/{prac}")))) == ["a"]
    assert ids(assert_bundle(api.get(url("Schedule?actor=dr-role")))) == ["a"]
    assert ids(assert_bundle(api.get(url("Schedule?active=false")))) == ["b"]
    assert ids(assert_bundle(api.get(url("Schedule?active=true")))) == [a.fhir_id]


# --------------------------------------------------------------------------- slots


@pytest.fixture
def morning(org: Any) -> Any:
    """Mon 1 June 2026, 09:00-10:00 Amsterdam, 15-minute slots."""
    return ScheduleFactory(
        organization=org,
        fhir_id="morning",
        planning_start=ams(2026, 6, 1, 9),
        planning_end=ams(2026, 6, 1, 10),
        slot_minutes=15,
    )


def test_slot_generation_and_busy(api: Any, org: Any, morning: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: datetime(2026, 5, 1, tzinfo=UTC))
    patient = PatientFactory(organization=org)
    AppointmentFactory(
        organization=org,
        patient=patient,
        schedule=morning,
        start=ams(2026, 6, 1, 9, 15),
        end=ams(2026, 6, 1, 9, 30),
    )
    # A cancelled appointment does not hold its slot.
    AppointmentFactory(
        organization=org,
        patient=patient,
        schedule=morning,
        status=AppointmentStatus.CANCELLED,
        start=ams(2026, 6, 1, 9, 30),
        end=ams(2026, 6, 1, 9, 45),
    )
    SlotFactory(
        organization=org,
        schedule=morning,
        fhir_id="blocked",
        status=SlotStatus.BUSY_UNAVAILABLE,
        start=ams(2026, 6, 1, 9, 45),
        end=ams(2026, 6, 1, 10),
    )
    bundle = assert_bundle(api.get(url("Slot?start=2026-06-01")))
    got = [(e["resource"]["id"], e["resource"]["status"]) for e in bundle["entry"]]
    assert got == [
        ("morning-20260601T070000Z", "free"),
        ("morning-20260601T071500Z", "busy"),
        ("morning-20260601T073000Z", "free"),
        ("blocked", "busy-unavailable"),
    ]
    first = bundle["entry"][0]["resource"]
    assert first["schedule"] == {"reference": "Schedule/morning"}
    assert first["serviceCategory"][0]["coding"][0]["code"] == "gp"
    R4BSlot.model_validate(first)
    FCSlot(first)
    free = assert_bundle(api.get(url("Slot?start=2026-06-01&status=free")))
    assert ids(free) == ["morning-20260601T070000Z", "morning-20260601T073000Z"]
    busy = assert_bundle(api.get(url("Slot?start=2026-06-01&status=busy,busy-unavailable")))
    assert ids(busy) == ["morning-20260601T071500Z", "blocked"]


def test_stored_slot_replaces_generated_one(
    api: Any, org: Any, morning: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: datetime(2026, 5, 1, tzinfo=UTC))
    SlotFactory(
        organization=org,
        schedule=morning,
        fhir_id="stored-0900",
        start=ams(2026, 6, 1, 9),
        end=ams(2026, 6, 1, 9, 15),
    )
    got = ids(assert_bundle(api.get(url("Slot?start=2026-06-01"))))
    assert got[0] == "stored-0900"
    assert "morning-20260601T070000Z" not in got
    assert len(got) == 4


def test_past_slots_are_never_free(api: Any, morning: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(
        "scheduling.selectors.utc_now", lambda: ams(2026, 6, 1, 9, 20).astimezone(UTC)
    )
    bundle = assert_bundle(api.get(url("Slot?start=2026-06-01")))
    assert [e["resource"]["status"] for e in bundle["entry"]] == ["busy", "busy", "free", "free"]


def test_slot_schedule_filter_accepts_occurrence_and_reference(
    api: Any, org: Any, daily: Any, morning: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: datetime(2026, 5, 1, tzinfo=UTC))
    for ref in ("Schedule/daily", "daily", "daily-20260601T070000Z"):
        bundle = assert_bundle(api.get(url("Slot"), {"start": "2026-06-01", "schedule": ref}))
        assert ids(bundle) == ["daily-20260601T070000Z", "daily-20260601T073000Z"]
        assert all(
            e["resource"]["schedule"]["reference"] == "Schedule/daily" for e in bundle["entry"]
        )


def test_slot_default_window_is_next_seven_days(api: Any, org: Any) -> None:
    now = datetime.now(UTC)
    ScheduleFactory(
        organization=org,
        fhir_id="soon",
        planning_start=now + timedelta(days=1),
        planning_end=now + timedelta(days=1, minutes=30),
        slot_minutes=15,
    )
    ScheduleFactory(
        organization=org,
        fhir_id="later",
        planning_start=now + timedelta(days=9),
        planning_end=now + timedelta(days=9, minutes=30),
        slot_minutes=15,
    )
    bundle = assert_bundle(api.get(url("Slot")))
    assert {e["resource"]["schedule"]["reference"] for e in bundle["entry"]} == {"Schedule/soon"}
    assert bundle["total"] == 2


def test_stored_slot_read(api: Any, org: Any, morning: Any) -> None:
    SlotFactory(organization=org, schedule=morning, fhir_id="s-1", comment="walk-in")
    response = api.get(url("Slot/s-1"))
    assert response.status_code == 200
    data = body(response)
    assert data["comment"] == "walk-in" and data["schedule"]["reference"] == "Schedule/morning"
    R4BSlot.model_validate(data)
    FCSlot(data)
    assert_outcome(api.get(url("Slot/morning-20260601T070000Z")), 404, contains="Schedule/morning")


@pytest.mark.parametrize("n_schedules", [1, 10])
def test_slot_search_query_count_is_fixed(
    api: Any, org: Any, n_schedules: int, monkeypatch: Any
) -> None:
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: datetime(2026, 5, 1, tzinfo=UTC))
    for _ in range(n_schedules):
        s = ScheduleFactory(
            organization=org,
            planning_start=ams(2026, 6, 1, 9),
            planning_end=ams(2026, 6, 1, 10),
            slot_minutes=15,
            rrule="FREQ=DAILY",
        )
        SlotFactory(organization=org, schedule=s, start=ams(2026, 6, 2, 8), end=ams(2026, 6, 2, 9))
        # One patient each: a patient is never in two appointments at once.
        AppointmentFactory(
            organization=org,
            patient=PatientFactory(organization=org),
            schedule=s,
            start=ams(2026, 6, 1, 9),
            end=ams(2026, 6, 1, 9, 15),
        )
    with CaptureQueriesContext(connection) as ctx:
        bundle = assert_bundle(api.get(url("Slot?start=ge2026-06-01&_count=500")))
    # ge2026-06-01 alone is ge2026-06-01&le2026-06-08: eight days of four slots, plus the stored one
    assert bundle["total"] == n_schedules * (8 * 4 + 1)
    # The token (with the organisation and its stamps), schedules, stored slots (blocked
    # time among them) and appointments.
    assert len(ctx.captured_queries) == 4, [q["sql"] for q in ctx.captured_queries]


@pytest.mark.parametrize("whole_clinic", [True, False])
def test_blocked_time_of_one_schedule_is_busy_on_the_persons_other_schedules(
    api: Any, org: Any, monkeypatch: Any, whole_clinic: bool
) -> None:
    """A search of the whole clinic takes blocked time from the stored slots it reads; one
    of named schedules reads it on its own: either way a block on one schedule makes the
    same person's slots on their other schedule busy, and only theirs."""
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: datetime(2026, 5, 1, tzinfo=UTC))
    role = PractitionerRoleFactory(organization=org)
    blocked_one, _other = (
        ScheduleFactory(
            organization=org,
            fhir_id=name,
            practitioner_role=role,
            planning_start=ams(2026, 6, 1, 9),
            planning_end=ams(2026, 6, 1, 10),
        )
        for name in ("blocked-one", "other")
    )
    ScheduleFactory(
        organization=org,
        fhir_id="stranger",
        planning_start=ams(2026, 6, 1, 9),
        planning_end=ams(2026, 6, 1, 10),
    )
    SlotFactory(
        organization=org,
        schedule=blocked_one,
        status=SlotStatus.BUSY_UNAVAILABLE,
        start=ams(2026, 6, 1, 9, 15),
        end=ams(2026, 6, 1, 9, 45),
    )
    query = "Slot?start=ge2026-06-01&start=lt2026-06-02&status=free&_count=100"
    if not whole_clinic:
        query += "&schedule=other"
    free = ids(assert_bundle(api.get(url(query))))
    assert "other-20260601T071500Z" not in free and "other-20260601T073000Z" not in free
    assert {"other-20260601T070000Z", "other-20260601T074500Z"} <= set(free)
    assert sum(1 for i in free if i.startswith("stranger-")) == (4 if whole_clinic else 0)


def test_schedule_search_queries_do_not_grow(
    api: Any, org: Any, django_assert_max_num_queries: Any
) -> None:
    for _ in range(5):
        ScheduleFactory(
            organization=org,
            rrule="FREQ=DAILY",
            planning_start=ams(2026, 6, 1, 9),
            planning_end=ams(2026, 6, 1, 10),
        )
    with django_assert_max_num_queries(4):
        small = assert_bundle(api.get(url("Schedule?date=2026-06-01")))
    for _ in range(45):
        ScheduleFactory(
            organization=org,
            rrule="FREQ=DAILY",
            planning_start=ams(2026, 6, 1, 9),
            planning_end=ams(2026, 6, 1, 10),
        )
    with django_assert_max_num_queries(4):
        big = assert_bundle(api.get(url("Schedule?date=2026-06-01")))
    assert (small["total"], big["total"]) == (5, 50)


# --------------------------------------------------------------------------- appointments


@pytest.fixture
def patient(org: Any) -> Any:
    return PatientFactory(organization=org, fhir_id="pat-1", given="Anna Maria", family="Jansen")


def test_appointment_search_needs_id_or_date(api: Any, patient: Any) -> None:
    assert_outcome(api.get(url("Patient/pat-1/Appointment")), 400, contains="_id")
    assert_outcome(api.get(url("Patient/pat-1/Appointment?status=booked")), 400)


def test_appointment_search_expands_recurring_and_filters_status(
    api: Any, org: Any, patient: Any, morning: Any
) -> None:
    AppointmentFactory(
        organization=org,
        patient=patient,
        fhir_id="weekly-appt",
        schedule=morning,
        practitioner_role=morning.practitioner_role,
        start=ams(2026, 6, 1, 9),
        end=ams(2026, 6, 1, 9, 15),
        rrule="FREQ=WEEKLY;COUNT=3",
    )
    AppointmentFactory(
        organization=org,
        patient=patient,
        fhir_id="once",
        status=AppointmentStatus.CANCELLED,
        cancelation_reason="patient ill",
        start=ams(2026, 6, 9, 11),
        end=ams(2026, 6, 9, 11, 30),
    )
    AppointmentFactory(
        organization=org,
        # Named: the factory's own "pat-N" ids can meet the fixture's "pat-1".
        patient=PatientFactory(organization=org, fhir_id="someone-else"),
        fhir_id="other-patient",
        start=ams(2026, 6, 9, 11),
        end=ams(2026, 6, 9, 11, 30),
    )
    bundle = assert_bundle(
        api.get(url("Patient/pat-1/Appointment?date=ge2026-06-01&date=le2026-06-30"))
    )
    assert ids(bundle) == [
        "weekly-appt-20260601T070000Z",
        "weekly-appt-20260608T070000Z",
        "once",
        "weekly-appt-20260615T070000Z",
    ]
    base = "http://testserver/v2/clinic-a/fhir/R4/Patient/pat-1/Appointment/"
    assert bundle["entry"][0]["fullUrl"] == base + "weekly-appt-20260601T070000Z"
    occ = bundle["entry"][0]["resource"]
    assert {
        "url": "urn:extension:parent:appointment",
        "valueReference": {"reference": "Appointment/weekly-appt"},
    } in occ["extension"]
    assert occ["participant"][0]["actor"]["reference"] == "Patient/pat-1"
    assert occ["participant"][1]["actor"]["reference"].startswith("PractitionerRole/")
    R4BAppointment.model_validate(occ)
    FCAppointment(occ)
    cancelled = assert_bundle(
        api.get(
            url("Patient/pat-1/Appointment?date=ge2026-06-01&date=le2026-06-30&status=cancelled")
        )
    )
    assert ids(cancelled) == ["once"]
    assert cancelled["entry"][0]["resource"]["cancelationReason"] == {"text": "patient ill"}
    by_id = assert_bundle(api.get(url("Patient/pat-1/Appointment?_id=once,other-patient")))
    assert ids(by_id) == ["once"]


def test_appointment_read(api: Any, org: Any, patient: Any) -> None:
    slot = SlotFactory(organization=org, fhir_id="slot-x")
    AppointmentFactory(
        organization=org,
        patient=patient,
        fhir_id="a1",
        slot=slot,
        schedule=slot.schedule,
        comment="back pain",
        rrule="FREQ=DAILY;COUNT=2",
    )
    response = api.get(url("Patient/pat-1/Appointment/a1"))
    assert response.status_code == 200
    data = body(response)
    assert data["slot"] == [{"reference": "Slot/slot-x"}]
    assert data["comment"] == "back pain"
    assert data["meta"]["lastUpdated"].endswith("+00:00")
    assert data["extension"][0]["url"] == "urn:extension:recurrence"
    R4BAppointment.model_validate(data)
    FCAppointment(data)
    occurrence = f"a1-{datetime.fromisoformat(data['start']).astimezone(UTC):%Y%m%dT%H%M%SZ}"
    assert_outcome(
        api.get(url(f"Patient/pat-1/Appointment/{occurrence}")), 404, contains="Appointment/a1"
    )


def test_stored_slots_of_an_imported_schedule_follow_the_clock_and_keep_their_fields(
    api: Any, org: Any, monkeypatch: Any
) -> None:
    """A schedule without a slot duration (imported): only its stored slots. Free ones that
    have started, or that the notice rule keeps out of reach, are busy; the others keep
    their own status; every field survives the snapshot's integer/text columns."""
    monkeypatch.setattr(
        "scheduling.selectors.utc_now", lambda: ams(2026, 6, 1, 9, 20).astimezone(UTC)
    )
    plain = ScheduleFactory(
        organization=org,
        fhir_id="imported",
        planning_start=ams(2026, 6, 1, 8),
        planning_end=ams(2026, 6, 1, 17),
        slot_minutes=None,
    )
    noticed = ScheduleFactory(
        organization=org,
        fhir_id="noticed",
        planning_start=ams(2026, 6, 1, 8),
        planning_end=ams(2026, 6, 1, 17),
        slot_minutes=None,
        minimum_notice_minutes=120,
    )
    category = [{"system": "http://example.org/service-category", "code": "x", "display": "X"}]
    for fhir_id, schedule, hour, minute, status in (
        ("started", plain, 9, 15, SlotStatus.FREE),
        ("open", plain, 10, 0, SlotStatus.FREE),
        ("taken", plain, 10, 15, SlotStatus.BUSY),
        ("off", plain, 10, 30, SlotStatus.BUSY_UNAVAILABLE),
        ("too-soon", noticed, 10, 45, SlotStatus.FREE),
        ("in-reach", noticed, 12, 0, SlotStatus.FREE),
    ):
        SlotFactory(
            organization=org,
            schedule=schedule,
            fhir_id=fhir_id,
            status=status,
            start=ams(2026, 6, 1, hour, minute),
            end=ams(2026, 6, 1, hour, minute) + timedelta(minutes=15),
            comment=f"note {fhir_id}",
            overbooked=fhir_id == "open",
            service_category=category,
        )
    every = assert_bundle(api.get(url("Slot?start=2026-06-01")))
    assert {e["resource"]["id"]: e["resource"]["status"] for e in every["entry"]} == {
        "started": "busy",
        "open": "free",
        "taken": "busy",
        "off": "busy-unavailable",
        "too-soon": "busy",
        "in-reach": "free",
    }
    assert ids(every) == ["started", "open", "taken", "off", "too-soon", "in-reach"]
    free = assert_bundle(api.get(url("Slot?start=2026-06-01&status=free")))
    assert ids(free) == ["open", "in-reach"] and free["total"] == 2
    busy = assert_bundle(api.get(url("Slot?start=2026-06-01&status=busy")))
    assert ids(busy) == ["started", "taken", "too-soon"] and busy["total"] == 3
    paged = assert_bundle(api.get(url("Slot?start=2026-06-01&_count=2")))
    assert ids(paged) == ["started", "open"] and paged["total"] == 6
    for entry in every["entry"]:
        found = entry["resource"]
        read = body(api.get(url(f"Slot/{found['id']}")))
        for name in ("start", "end", "comment", "serviceCategory", "schedule"):
            assert found[name] == read[name], name
        assert found.get("overbooked") == read.get("overbooked")
        assert found["meta"]["lastUpdated"] == read["meta"]["lastUpdated"]
    assert every["entry"][1]["resource"]["overbooked"] is True
