"""The fast search and booking paths behave exactly like the plain ones they replace.

Lazy paging of slot searches, the per-process cache of expansions, integer timestamps read
from the database, the engine's date-window rules at the API, the single authentication
query, and the early 409 of a booking for a slot that is already taken.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B.slot import Slot as R4BSlot
from rest_framework.test import APIClient

from scheduling import selectors, services
from scheduling.db.compiled_query import CompiledQuery, EpochSeconds
from scheduling.db.epoch import EpochMicros
from scheduling.errors import BusinessRuleViolation, SlotTaken
from scheduling.models import Appointment, Organization, SlotStatus
from scheduling.recurrence import Period
from scheduling.services import booking as booking_service
from scheduling.services import claims
from tests.api_helpers import assert_bundle, assert_outcome, url
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory, SlotFactory

pytestmark = pytest.mark.django_db

AMS = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 5, 1, tzinfo=UTC)


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)  # type: ignore[misc]


@pytest.fixture
def clinic(org: Organization, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Three daily schedules with 20-minute slots on the same hours, one stored slot that
    takes the place of a generated one, a blocked slot and a booked appointment."""
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: NOW)
    schedules = [
        ScheduleFactory(
            organization=org,
            fhir_id=name,
            planning_start=ams(2026, 6, 1, 9),
            planning_end=ams(2026, 6, 1, 11),
            rrule="FREQ=DAILY",
            slot_minutes=20,
        )
        for name in ("b", "a", "a-0")  # "a-0" sorts before "a-2026..." as an id
    ]
    SlotFactory(
        organization=org,
        schedule=schedules[0],
        fhir_id="stored",
        status=SlotStatus.FREE,
        start=ams(2026, 6, 2, 9),
        end=ams(2026, 6, 2, 9, 20),
    )
    SlotFactory(
        organization=org,
        schedule=schedules[1],
        fhir_id="blocked",
        status=SlotStatus.BUSY_UNAVAILABLE,
        start=ams(2026, 6, 2, 9, 20),
        end=ams(2026, 6, 2, 10),
    )
    AppointmentFactory(
        organization=org,
        patient=PatientFactory(organization=org),
        schedule=schedules[2],
        start=ams(2026, 6, 1, 9, 40),
        end=ams(2026, 6, 1, 10),
    )
    return {"schedules": schedules}


def _entries(api: APIClient, query: str) -> tuple[int, list[tuple[str, str, str]]]:
    bundle = assert_bundle(api.get(url(f"Slot?{query}")))
    rows = [
        (e["resource"]["start"], e["resource"]["id"], e["resource"]["status"])
        for e in bundle.get("entry", [])
    ]
    return bundle["total"], rows


def test_pages_put_together_are_the_whole_result_in_order(api: APIClient, clinic: Any) -> None:
    window = "start=ge2026-06-01&start=lt2026-06-04"
    total, everything = _entries(api, f"{window}&_count=500")
    # 3 schedules x 3 days x 6 slots, one generated slot replaced by the stored one.
    assert total == len(everything) == 54
    assert [(start, slot_id) for start, slot_id, _ in everything] == sorted(
        (datetime.fromisoformat(start).astimezone(UTC).isoformat(), slot_id)
        for start, slot_id, _ in everything
    )
    paged: list[tuple[str, str, str]] = []
    for offset in range(0, total, 7):
        page_total, page = _entries(api, f"{window}&_count=7&_offset={offset}")
        assert page_total == total
        paged.extend(page)
    assert paged == everything
    first = [slot_id for _, slot_id, _ in everything[:3]]
    assert first == ["a-0-20260601T070000Z", "a-20260601T070000Z", "b-20260601T070000Z"]


def test_statuses_of_the_fast_path(api: APIClient, clinic: Any) -> None:
    _, rows = _entries(api, "start=2026-06-02&_count=500")
    status = {slot_id: value for _, slot_id, value in rows}
    assert status["stored"] == "free"
    assert "b-20260602T070000Z" not in status  # the stored slot wins over its twin
    assert status["blocked"] == "busy-unavailable"
    # The blocked slot starts with a's 09:20 slot (it takes its place) and covers 09:40.
    assert status["a-20260602T070000Z"] == "free"
    assert "a-20260602T072000Z" not in status
    assert status["a-20260602T074000Z"] == "busy"
    _, monday = _entries(api, "start=2026-06-01&status=busy")
    assert [slot_id for _, slot_id, _ in monday] == ["a-0-20260601T074000Z"]


def test_a_page_validates_as_r4b(api: APIClient, clinic: Any) -> None:
    bundle = assert_bundle(api.get(url("Slot?start=2026-06-02&_count=5")))
    for entry in bundle["entry"]:
        R4BSlot.model_validate(entry["resource"])
    assert bundle["entry"][0]["resource"]["serviceCategory"][0]["coding"][0]["code"] == "gp"


def test_editing_a_rule_is_seen_at_once_despite_the_cache(api: APIClient, clinic: Any) -> None:
    _, before = _entries(api, "start=2026-06-03&schedule=Schedule/b&_count=500")
    assert len(before) == 6
    schedule = clinic["schedules"][0]
    schedule.exdates = [ams(2026, 6, 3, 9).isoformat()]
    schedule.save()
    _, after = _entries(api, "start=2026-06-03&schedule=Schedule/b&_count=500")
    assert after == []
    schedule.exdates = []
    schedule.planning_end = ams(2026, 6, 1, 10)
    schedule.save()
    _, shorter = _entries(api, "start=2026-06-03&schedule=Schedule/b&_count=500")
    assert len(shorter) == 3


def test_epoch_columns_are_exact(org: Organization) -> None:
    exact = datetime(2026, 6, 1, 7, 15, 30, 123456, tzinfo=UTC)
    whole = datetime(2026, 6, 1, 7, 15, tzinfo=UTC)
    appointment = AppointmentFactory(organization=org, start=exact, end=exact + timedelta(hours=1))
    AppointmentFactory(organization=org, start=whole, end=whole + timedelta(hours=1))
    rows = dict(Appointment.objects.values_list("fhir_id", EpochMicros("start")).order_by("start"))
    micros = sorted(rows.values())
    assert micros == [int(whole.timestamp()) * 10**6, int(exact.timestamp()) * 10**6 + 123456]
    seconds = Appointment.objects.filter(pk=appointment.pk).values_list(
        EpochSeconds("start"), flat=True
    )
    assert list(seconds) == [int(exact.timestamp())]


def test_slot_results_read_only_as_far_as_asked(org: Organization, clinic: Any) -> None:
    results = selectors.slot_search(
        organization=org,
        window=Period(ams(2026, 6, 1), ams(2026, 6, 8)),
        now=NOW,
    )
    assert len(results) == 3 * 7 * 6 - 1 + 1  # one stored slot replaces a generated one
    assert results._rows == []  # counting built nothing
    page = results[2:4]
    assert len(results._rows) == 4
    assert [r.id for r in page] == [results[2].id, results[3].id]
    assert results[-1].id == "b-20260607T084000Z"


@pytest.mark.parametrize(
    ("query", "contains"),
    [
        ("date=2026-06-01&date=ge2026-05-01", "exact date"),
        ("date=eq2026-06-01&date=eq2026-06-02", "exact date"),
        ("date=ge2026-06-01&date=gt2026-06-02", "at most one lower bound"),
        ("date=le2026-06-01&date=lt2026-06-02", "at most one lower bound"),
    ],
)
def test_window_rules_of_the_engine_apply_at_the_api(
    api: APIClient, org: Organization, query: str, contains: str
) -> None:
    outcome = assert_outcome(api.get(url(f"Schedule?{query}")), 400, contains=contains)
    assert outcome["issue"][0]["expression"] == ["date"]


def test_366_local_days_are_allowed_across_dst(api: APIClient, org: Organization) -> None:
    # 2026-01-01 to 2027-01-02 (le includes its day) is 366 wall-clock days in Amsterdam.
    assert_bundle(api.get(url("Schedule?date=ge2026-01-01&date=le2027-01-01")))
    assert_outcome(
        api.get(url("Schedule?date=ge2026-01-01&date=le2027-01-02")), 400, contains="366"
    )


def test_authentication_is_one_query(api: APIClient, clinic: Any) -> None:
    with CaptureQueriesContext(connection) as ctx:
        assert_bundle(api.get(url("Slot?start=2026-06-02")))
    auth = [q["sql"] for q in ctx.captured_queries if "fhir_api_" in q["sql"]]
    assert len(auth) == 1
    assert len(ctx.captured_queries) <= 5


# --------------------------------------------------------------------------- booking


def _book(org: Organization, schedule: Any, **kwargs: Any) -> services.BookingResult:
    patient = kwargs.pop("patient", None) or PatientFactory(organization=org)
    return services.appointment_book(
        organization=org,
        patient=patient,
        schedule_id=schedule.fhir_id,
        start=schedule.planning_start,
        practitioner_role_id=schedule.practitioner_role.fhir_id,
        status="booked",
        comment="",
        actor="svc",
        **kwargs,
    )


def test_a_taken_slot_is_refused_before_the_lock(org: Organization) -> None:
    schedule = ScheduleFactory(organization=org)
    _book(org, schedule)
    other = PatientFactory(organization=org)
    with CaptureQueriesContext(connection) as ctx, pytest.raises(SlotTaken):
        _book(org, schedule, patient=other)
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert not any("FOR UPDATE" in sql for sql in sqls)
    assert not any(sql.startswith(("INSERT", "SAVEPOINT")) for sql in sqls)


def test_booking_still_validates_the_new_row(org: Organization) -> None:
    schedule = ScheduleFactory(organization=org)
    booked = _book(org, schedule).appointment
    stored = Appointment.objects.get(pk=booked.pk)
    assert (stored.organization_id, stored.schedule_id, stored.practitioner_role_id) == (
        org.pk,
        schedule.pk,
        schedule.practitioner_role_id,
    )


def test_a_concurrent_repeat_of_the_key_is_replayed_not_refused(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repeat's cheap replay check ran before the first request committed; by the
    early availability check the slot is taken by that very booking: replay it."""
    schedule = ScheduleFactory(organization=org)
    patient = PatientFactory(organization=org)
    first = _book(org, schedule, patient=patient, idempotency_key="k-1").appointment
    real_replay = booking_service._replay
    calls: list[int] = []

    def replay_missing_once(**kwargs: Any) -> Any:
        calls.append(1)
        return None if len(calls) == 1 else real_replay(**kwargs)

    monkeypatch.setattr(booking_service, "_replay", replay_missing_once)
    again = _book(org, schedule, patient=patient, idempotency_key="k-1")
    assert (again.created, again.appointment.pk) == (False, first.pk)
    assert Appointment.objects.count() == 1


def test_the_constraint_still_decides_past_both_checks(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the early and the locked availability checks both switched off, the unique
    constraint refuses the second active appointment and the service reports SlotTaken."""
    monkeypatch.setattr(booking_service, "_refuse_early", lambda **_: None)
    monkeypatch.setattr(claims, "slot_claim", lambda **_: None)
    schedule = ScheduleFactory(organization=org)
    _book(org, schedule)
    with pytest.raises(SlotTaken):
        _book(org, schedule)
    assert Appointment.objects.count() == 1


def test_a_past_booked_start_is_still_422(org: Organization) -> None:
    schedule = ScheduleFactory(organization=org)
    past = schedule.planning_start - timedelta(days=14)
    schedule.planning_start, schedule.planning_end = past, past + timedelta(hours=3)
    schedule.save()
    AppointmentFactory(
        organization=org, schedule=schedule, start=past, end=past + timedelta(minutes=15)
    )
    with pytest.raises(BusinessRuleViolation):
        _book(org, schedule)


def test_the_compiled_organisation_query_answers_like_the_orm(org: Organization) -> None:
    loaded = selectors.organization_get(organization_id=org.pk)
    assert loaded is not None
    assert (loaded.pk, loaded.name, loaded.timezone) == (org.pk, org.name, org.timezone)
    # Fields it does not select load on first access, as for a deferred field.
    assert loaded.created_at == Organization.objects.get(pk=org.pk).created_at
    assert selectors.organization_get(organization_id="no-such-clinic") is None
    # The id is a parameter, never SQL.
    assert selectors.organization_get(organization_id="x' OR '1'='1") is None


def test_a_compiled_query_takes_only_and_all_of_its_arguments(org: Organization) -> None:
    constant = CompiledQuery(lambda value: Organization.objects.filter(pk=value, name="fixed"))
    with pytest.raises(ValueError, match="must all be its arguments"):
        constant.rows("clinic-a")
    unused = CompiledQuery(lambda a, b: Organization.objects.filter(pk=a), arity=2)
    with pytest.raises(ValueError, match="each of its arguments"):
        unused.rows("clinic-a", "x")
    # An argument may be used several times, and arguments may come in any SQL order.
    both = CompiledQuery(
        lambda name, pk: (
            Organization.objects.filter(pk=pk, name=name).exclude(id=name).values_list("id")
        ),
        arity=2,
    )
    assert both.rows(org.name, org.pk) == [(org.pk,)]
    assert both.rows(org.pk, org.name) == []


def test_api_requests_skip_the_session_user_and_message_middleware() -> None:
    from django.conf import settings
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory

    from fhir_api import middleware

    # Django's own classes are not listed: only the ones that let API requests through.
    for name in ("SessionMiddleware", "AuthenticationMiddleware", "MessageMiddleware"):
        assert f"fhir_api.middleware.{name}" in settings.MIDDLEWARE, name
    seen: dict[str, list[bool]] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen[request.path] = [hasattr(request, n) for n in ("session", "user", "_messages")]
        return HttpResponse()

    chain = middleware.SessionMiddleware(
        middleware.AuthenticationMiddleware(middleware.MessageMiddleware(view))
    )
    for path in ("/v2/clinic-a/fhir/R4/Slot/x", "/oauth/token", "/admin/"):
        chain(RequestFactory().get(path))
    assert seen == {
        "/v2/clinic-a/fhir/R4/Slot/x": [False, False, False],
        "/oauth/token": [False, False, False],
        "/admin/": [True, True, True],
    }
