"""Search caches keyed by the data stamps (scheduling/db/search_cache.py, migration 0003).

The stamps are renewed by database triggers, so every write path must renew them: the
ORM, bulk updates, raw SQL and, on PostgreSQL, another connection altogether. Cached
answers must equal uncached ones, follow ``now`` without a rebuild, and stay per tenant.
These tests commit (``transaction=True``): on PostgreSQL the stamps only change at commit.
"""

from __future__ import annotations

import random
import threading
import time as time_module
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from scheduling import selectors
from scheduling.db import search_cache
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    DataStamp,
    Organization,
    Schedule,
    Slot,
    SlotStatus,
)
from scheduling.recurrence import Period
from tests.api_helpers import assert_bundle, ids, url
from tests.conftest import is_postgres
from tests.factories import (
    AppointmentFactory,
    PatientFactory,
    ScheduleFactory,
)
from tests.test_booking import book_body, book_url

pytestmark = pytest.mark.django_db(transaction=True)

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
CACHES = (search_cache.slot_cache, search_cache.slot_grid_cache, search_cache.schedule_cache)


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    for cache in CACHES:
        cache.clear()
    yield
    for cache in CACHES:
        cache.clear()


def stamps(org: Organization) -> tuple[int, int] | None:
    row = (
        DataStamp.objects.filter(organization_id=org.pk)
        .values_list("schedules", "bookings")
        .first()
    )
    return None if row is None else (row[0], row[1])


def weekday_mornings(organization: Organization, **extra: Any) -> Schedule:
    """Every weekday 09:00-10:00 Amsterdam time, 15-minute slots, from October 2026 on."""
    start = datetime(2026, 10, 5, 7, 0, tzinfo=UTC)  # a Monday, 09:00 CEST
    return ScheduleFactory(
        organization=organization,
        planning_start=start,
        planning_end=start + timedelta(hours=1),
        rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
        recurrence_timezone="Europe/Amsterdam",
        **{"fhir_id": "weekly", **extra},
    )


@pytest.fixture
def weekly(org: Organization) -> Schedule:
    return weekday_mornings(org)


def next_monday() -> datetime:
    today = datetime.now(UTC).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


def local_nine(day: datetime, minute: int = 0) -> datetime:
    """09:mm in Amsterdam on ``day``'s date, in UTC (whatever the season)."""
    return datetime.combine(day.date(), time(9, minute), AMSTERDAM).astimezone(UTC)


def week_query(start: datetime, extra: str = "") -> str:
    end = start + timedelta(days=7)
    return f"Slot?start=ge{start.date()}&start=lt{end.date()}&_count=500{extra}"


def search(api: APIClient, query: str, org: str = "clinic-a") -> dict[str, Any]:
    return assert_bundle(api.get(url(query, org)))


def statuses(bundle: dict[str, Any]) -> dict[str, str]:
    return {e["resource"]["id"]: e["resource"]["status"] for e in bundle.get("entry", [])}


# --------------------------------------------------------------------------- triggers


def test_each_table_renews_its_own_stamp(org: Organization, weekly: Schedule) -> None:
    before = stamps(org)
    assert before is not None
    patient = PatientFactory(organization=org)
    assert stamps(org) == before, "patients feed no cached search"

    appointment = AppointmentFactory(organization=org, patient=patient, schedule=weekly)
    after_insert = stamps(org)
    assert after_insert is not None
    assert after_insert[0] == before[0] and after_insert[1] != before[1]

    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CANCELLED)
    after_update = stamps(org)
    assert after_update is not None and after_update[1] != after_insert[1]

    Schedule.objects.filter(pk=weekly.pk).update(slot_minutes=30)
    after_schedule = stamps(org)
    assert after_schedule is not None
    assert after_schedule[0] != after_update[0] and after_schedule[1] == after_update[1]

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM scheduling_appointment WHERE id = %s", [appointment.pk])
    after_delete = stamps(org)
    assert after_delete is not None and after_delete[1] != after_schedule[1]


def test_a_rolled_back_write_leaves_the_stamps(org: Organization, weekly: Schedule) -> None:
    before = stamps(org)
    with pytest.raises(RuntimeError), transaction.atomic():
        Schedule.objects.filter(pk=weekly.pk).update(active=False)
        raise RuntimeError("roll back")
    assert stamps(org) == before


def test_stamps_belong_to_one_organisation(
    org: Organization, outsider_org: Organization, weekly: Schedule
) -> None:
    ScheduleFactory(organization=outsider_org)
    before = stamps(org)
    Schedule.objects.filter(organization=outsider_org).update(active=False)
    assert stamps(org) == before


@pytest.mark.postgres
def test_postgres_renews_once_at_commit_and_bypasses_the_cache_inside(
    org: Organization, weekly: Schedule
) -> None:
    if not is_postgres():
        pytest.skip("PostgreSQL only: deferred triggers")
    before = stamps(org)
    loaded = selectors.organization_get(organization_id=org.pk)
    assert loaded is not None
    with transaction.atomic():
        Schedule.objects.filter(pk=weekly.pk).update(slot_minutes=20)
        Schedule.objects.filter(pk=weekly.pk).update(slot_minutes=30)
        # Not yet renewed (deferred to commit), so nothing may be cached in here.
        assert stamps(org) == before
        assert search_cache.current_stamps(loaded) is None
    after = stamps(org)
    assert after is not None and after[0] != before[0]  # type: ignore[index]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT schedules_txid FROM scheduling_datastamp WHERE organization_id = %s",
            [org.pk],
        )
        assert cursor.fetchone()[0] is not None


# --------------------------------------------------------------------------- slot search


def test_a_repeated_slot_search_is_served_from_the_cache(
    api: APIClient, org: Organization, weekly: Schedule
) -> None:
    query = week_query(next_monday(), "&status=free")
    first = search(api, query)
    assert first["total"] == 5 * 4
    hits = search_cache.slot_cache.hits
    with CaptureQueriesContext(connection) as queries:
        second = search(api, query)
    assert second == first
    assert search_cache.slot_cache.hits == hits + 1
    # One query: the token, with the organisation and its stamps riding along. No
    # schedule, slot or appointment is read.
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]


def test_a_booking_through_the_api_shows_at_once_and_keeps_the_grid(
    api: APIClient, org: Organization, weekly: Schedule
) -> None:
    monday = next_monday()
    query = week_query(monday)
    before = statuses(search(api, query))
    first_free = min(i for i, s in before.items() if s == "free")
    start = datetime.strptime(first_free.rsplit("-", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    patient = PatientFactory(organization=org, fhir_id="p1")
    booked = api.post(book_url(org.pk, patient.fhir_id), book_body(weekly, start), format="json")
    assert booked.status_code == 201, booked.content

    grid_hits = search_cache.slot_grid_cache.hits
    after = statuses(search(api, query))
    assert after[first_free] == "busy"
    assert {i for i, s in after.items() if s != before[i]} == {first_free}
    # The booking renewed only the bookings stamp: the expansion was reused.
    assert search_cache.slot_grid_cache.hits == grid_hits + 1


def test_a_booking_leaves_no_stale_free_slot_of_the_occupant_and_keeps_the_others(
    api: APIClient, org: Organization, weekly: Schedule
) -> None:
    """After a booking the snapshot keeps the verdicts of occupants whose time is unchanged
    and re-asks the engine for the rest: the booked practitioner's OTHER schedule must show
    the booked time busy at once, and every answer must equal an uncached one."""
    monday = next_monday()
    # The same practitioner's second schedule over the same mornings (30-minute slots),
    # and a colleague's schedule at the same times.
    second = weekday_mornings(
        org,
        fhir_id="second",
        practitioner_role=weekly.practitioner_role,
        practitioner=weekly.practitioner,
        slot_minutes=30,
    )
    colleague = weekday_mornings(org, fhir_id="colleague")
    assert colleague.occupant != weekly.occupant == second.occupant
    query = week_query(monday)
    before = statuses(search(api, query))
    nine = local_nine(monday)
    stamp = f"{nine:%Y%m%dT%H%M%SZ}"
    assert before[f"second-{stamp}"] == before[f"colleague-{stamp}"] == "free"
    patient = PatientFactory(organization=org, fhir_id="p1")
    booked = api.post(book_url(org.pk, patient.fhir_id), book_body(weekly, nine), format="json")
    assert booked.status_code == 201, booked.content

    after = statuses(search(api, query))
    # The practitioner's 09:00-09:30 slot of the other schedule holds the booked 09:00.
    assert after[f"weekly-{stamp}"] == after[f"second-{stamp}"] == "busy"
    assert after[f"colleague-{stamp}"] == "free"
    assert {i for i, s in after.items() if s != before[i]} == {
        f"weekly-{stamp}",
        f"second-{stamp}",
    }
    # Searching for free time does not offer it either, and the cached (partly kept)
    # answer is the one a search from scratch gives.
    free = search(api, query + "&status=free")
    assert f"second-{stamp}" not in ids(free) and f"weekly-{stamp}" not in ids(free)
    for cache in CACHES:
        cache.clear()
    assert statuses(search(api, query)) == after
    assert search(api, query + "&status=free") == free

    # And the other way: cancelling frees the time of both schedules again.
    appointment = Appointment.objects.get(organization=org, patient=patient)
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CANCELLED)
    assert statuses(search(api, query)) == before


@pytest.mark.parametrize(
    "change",
    ["bulk update", "raw SQL", "delete", "stored busy slot"],
)
def test_every_write_path_is_seen_by_the_next_search(
    api: APIClient, org: Organization, weekly: Schedule, change: str
) -> None:
    monday = next_monday()
    query = week_query(monday, "&status=free")
    assert search(api, query)["total"] == 20
    nine = local_nine(monday)
    if change == "bulk update":
        Schedule.objects.filter(pk=weekly.pk).update(active=False)
        expected = 0
    elif change == "raw SQL":
        with connection.cursor() as cursor:
            cursor.execute("UPDATE scheduling_schedule SET slot_minutes = 30")
        expected = 10
    elif change == "delete":
        appointment = AppointmentFactory(
            organization=org, schedule=weekly, start=nine, end=nine + timedelta(minutes=15)
        )
        assert search(api, query)["total"] == 19
        appointment.delete()
        expected = 20
    else:
        Slot.objects.create(
            organization=org,
            fhir_id="blocked",
            schedule=weekly,
            status=SlotStatus.BUSY_UNAVAILABLE,
            start=nine,
            end=nine + timedelta(hours=1),
        )
        expected = 16
    assert search(api, query)["total"] == expected


@pytest.mark.postgres
def test_a_write_from_another_connection_is_seen(
    api: APIClient, org: Organization, weekly: Schedule, django_db_blocker: Any
) -> None:
    if not is_postgres():
        pytest.skip("PostgreSQL only: a second server connection")
    import psycopg

    monday = next_monday()
    query = week_query(monday, "&status=free")
    assert search(api, query)["total"] == 20
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as other:
        other.execute("UPDATE scheduling_schedule SET active = false WHERE id = %s", [weekly.pk])
    assert search(api, query)["total"] == 0


def test_cached_answers_follow_now_without_a_rebuild(
    api: APIClient, org: Organization, weekly: Schedule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monday = next_monday()
    query = week_query(monday)
    free = {i for i, s in statuses(search(api, query)).items() if s == "free"}
    assert len(free) == 20
    builds = search_cache.slot_cache.misses
    # Monday 09:20 Amsterdam: the 09:00 and 09:15 slots have started.
    later = local_nine(monday, 20)
    monkeypatch.setattr(selectors, "utc_now", lambda: later)
    now_free = search(api, query + "&status=free")
    now_busy = search(api, query + "&status=busy")
    assert now_free["total"] == 18 and now_busy["total"] == 2
    assert set(ids(now_busy)) == {f"weekly-{local_nine(monday, m):%Y%m%dT%H%M%SZ}" for m in (0, 15)}
    assert search_cache.slot_cache.misses == builds


def test_a_search_without_start_is_served_from_the_cache_and_cut_to_its_own_window(
    api: APIClient, org: Organization, weekly: Schedule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``start`` the window is now to now + 7 days: it moves with every request.
    Its snapshot is built for whole hours around it and cut to each request's window, so
    the answer is what an uncached search gives, to the second, from one build."""
    monday = next_monday()
    other = ScheduleFactory(organization=org, fhir_id="other", planning_start=local_nine(monday))
    Slot.objects.create(
        organization=org,
        fhir_id="stored",
        schedule=other,
        status=SlotStatus.FREE,
        start=local_nine(monday, 30),
        end=local_nine(monday, 45),
    )

    def at(now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        monkeypatch.setattr(selectors, "utc_now", lambda: now)
        cached = search(api, "Slot?_count=500")
        saved = [cache.max_weight for cache in CACHES]
        for cache in CACHES:
            cache.max_weight = 0
        try:
            uncached = search(api, "Slot?_count=500")
        finally:
            for cache, weight in zip(CACHES, saved, strict=True):
                cache.max_weight = weight
        return cached, uncached

    # 09:20:07 on Monday: 09:00-09:15 has ended (left out), 09:15-09:30 has started (busy).
    first, uncached = at(local_nine(monday, 20) + timedelta(seconds=7))
    assert first == uncached
    got = statuses(first)
    assert f"weekly-{local_nine(monday, 0):%Y%m%dT%H%M%SZ}" not in got
    assert got[f"weekly-{local_nine(monday, 15):%Y%m%dT%H%M%SZ}"] == "busy"
    assert got["stored"] == "free"
    builds = search_cache.slot_cache.misses
    # Seconds and minutes later in the same hour: no build, and the window still moves.
    for now in (
        local_nine(
            monday,
            29,
        )
        + timedelta(seconds=59),
        local_nine(monday, 31),
    ):
        again, uncached = at(now)
        assert again == uncached
    # At 09:31 the stored 09:30 slot has started, the 09:15 one has ended.
    assert statuses(again)["stored"] == "busy"
    assert f"weekly-{local_nine(monday, 15):%Y%m%dT%H%M%SZ}" not in statuses(again)
    assert search_cache.slot_cache.misses == builds
    # The window's end moves too: next Monday 09:15 starts before 09:31 + 7 days, 09:45
    # after it.
    next_week = monday + timedelta(days=7)
    assert f"weekly-{local_nine(next_week, 15):%Y%m%dT%H%M%SZ}" in statuses(again)
    assert f"weekly-{local_nine(next_week, 45):%Y%m%dT%H%M%SZ}" not in statuses(again)


def test_cached_and_uncached_answers_are_equal(
    api: APIClient, org: Organization, weekly: Schedule
) -> None:
    monday = next_monday()
    other = ScheduleFactory(organization=org, fhir_id="other", planning_start=local_nine(monday))
    booked = local_nine(monday, 15)
    AppointmentFactory(
        organization=org, schedule=weekly, start=booked, end=booked + timedelta(minutes=15)
    )
    Slot.objects.create(
        organization=org,
        fhir_id="stored",
        schedule=other,
        status=SlotStatus.FREE,
        start=other.planning_start,
        end=other.planning_start + timedelta(minutes=15),
    )
    queries = [
        week_query(monday),
        week_query(monday, "&status=free&_offset=4"),
        week_query(monday, "&status=busy"),
        week_query(monday, "&schedule=Schedule/other"),
        week_query(monday, "&service-category=gp"),
        f"Schedule?date=ge{monday.date()}&date=lt{(monday + timedelta(days=7)).date()}",
    ]
    cached = [search(api, q) for q in queries]
    cached_again = [search(api, q) for q in queries]
    # Statuses and paging share one snapshot: 3 misses and 2 hits, then 5 hits.
    assert search_cache.slot_cache.hits == 7 and search_cache.schedule_cache.hits == 1
    saved = [cache.max_weight for cache in CACHES]
    for cache in CACHES:
        cache.clear()
        cache.max_weight = 0
    try:
        uncached = [search(api, q) for q in queries]
    finally:
        for cache, weight in zip(CACHES, saved, strict=True):
            cache.max_weight = weight
    assert cached == cached_again == uncached
    assert len(search_cache.slot_cache) == 0


def test_caches_are_per_organisation(
    org: Organization,
    outsider_org: Organization,
    weekly: Schedule,
    make_api_client: Any,
) -> None:
    weekday_mornings(outsider_org, slot_minutes=30)
    clients = {}
    for organization in (org, outsider_org):
        _, token = make_api_client(organization)
        clients[organization.pk] = APIClient()
        clients[organization.pk].credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    query = week_query(next_monday(), "&status=free")
    assert search(clients["clinic-a"], query, "clinic-a")["total"] == 20
    assert search(clients["clinic-b"], query, "clinic-b")["total"] == 10
    assert search(clients["clinic-a"], query, "clinic-a")["total"] == 20
    # An outsider's token still meets the tenancy check before any cache.
    outsider = clients["clinic-b"].get(url(query, "clinic-a"))
    assert outsider.status_code == 404


# --------------------------------------------------------------------------- schedule search


def test_schedule_search_survives_bookings_but_not_schedule_changes(
    api: APIClient, org: Organization, weekly: Schedule
) -> None:
    monday = next_monday()
    query = f"Schedule?date=ge{monday.date()}&date=lt{(monday + timedelta(days=7)).date()}"
    assert search(api, query)["total"] == 5
    nine = local_nine(monday)
    AppointmentFactory(
        organization=org, schedule=weekly, start=nine, end=nine + timedelta(minutes=15)
    )
    hits = search_cache.schedule_cache.hits
    assert search(api, query)["total"] == 5
    assert search_cache.schedule_cache.hits == hits + 1
    Schedule.objects.filter(pk=weekly.pk).update(rrule="FREQ=WEEKLY;BYDAY=MO")
    assert search(api, query)["total"] == 1


def test_an_organisation_without_stamps_is_answered_uncached(
    api: APIClient, org: Organization, weekly: Schedule
) -> None:
    DataStamp.objects.all().delete()
    query = week_query(next_monday(), "&status=free")
    assert search(api, query)["total"] == 20
    assert search(api, query)["total"] == 20
    assert search_cache.slot_cache.hits == 0 and len(search_cache.slot_cache) == 0


def test_the_cache_is_bounded_by_rows(
    api: APIClient, org: Organization, weekly: Schedule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_cache.slot_cache, "max_weight", 30)
    monday = next_monday()
    for week in range(3):
        search(api, week_query(monday + timedelta(days=7 * week)))
    # 20 rows per week: one entry fits.
    assert len(search_cache.slot_cache) == 1
    assert search_cache.slot_cache._weight <= 30


@pytest.mark.django_db(transaction=False)
def test_concurrent_misses_of_one_search_build_it_once() -> None:
    cache = search_cache.StampedCache(100)
    organization = Organization(id="x", name="x", timezone="UTC")
    for name, value in zip(search_cache.STAMP_ATTRIBUTES, (1, 2), strict=True):
        setattr(organization, name, value)
    calls: list[int] = []
    gate = threading.Event()

    def build() -> tuple[str, int]:
        calls.append(1)
        gate.wait(5)
        return "value", 1

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get_or_build, organization, "k", build) for _ in range(4)]
        time_module.sleep(0.2)  # all four are waiting for the first build now
        gate.set()
        assert [future.result() for future in futures] == ["value"] * 4
    assert len(calls) == 1
    # A new stamp is a new build.
    setattr(organization, search_cache.STAMP_ATTRIBUTES[1], 3)
    assert cache.get_or_build(organization, "k", build) == "value" and len(calls) == 2


@pytest.mark.postgres
def test_the_token_query_runs_as_a_prepared_statement(
    api: APIClient, org: Organization, weekly: Schedule
) -> None:
    if not is_postgres():
        pytest.skip("PostgreSQL only: prepared statements")
    query = week_query(next_monday(), "&status=free")
    for _ in range(7):  # psycopg prepares after 5 executions on a connection
        assert search(api, query)["total"] == 20
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    assert any("fhir_api_accesstoken" in statement for statement in statements), statements
    # Django's own queries are not prepared.
    assert not any("scheduling_appointment" in statement for statement in statements)


# --------------------------------------------------------------- lanes and index agree


def _answer(results: selectors.SlotResults) -> tuple[int, list[tuple[str, str, datetime]]]:
    return len(results), [(r.id, r.status, r.start) for r in results[:]]


@pytest.mark.parametrize("seed", range(10))
def test_a_snapshot_answers_alike_from_its_lanes_and_from_its_index(
    org: Organization, seed: int
) -> None:
    """A snapshot just built answers from its lanes (counted by arithmetic, only a page's
    slots made); one served again from its index (sorted once, bisected at now). Over
    random rules (notice, advance, buffers, capacity), two schedules of one practitioner,
    bookings, a live hold, blocked time, stored slots that replace generated ones, windows
    cut from a wider snapshot and every status filter, both must give the same total,
    rows, statuses and order as each other, page by page."""
    rng = random.Random(seed)
    monday = next_monday()

    def rules() -> dict[str, Any]:
        return {
            "minimum_notice_minutes": rng.choice([None, 45, 24 * 60]),
            "maximum_advance_days": rng.choice([None, 1, 3]),
            "buffer_before_minutes": rng.choice([None, 10]),
            "buffer_after_minutes": rng.choice([None, 5]),
            "capacity": rng.choice([None, 1, 2]),
        }

    first = weekday_mornings(org, fhir_id="a", slot_minutes=rng.choice([10, 15, 20]), **rules())
    # The same person's second schedule, whose ids sort between and after the first's.
    second = weekday_mornings(
        org,
        fhir_id="a-b",
        practitioner_role=first.practitioner_role,
        practitioner=first.practitioner,
        slot_minutes=30,
        **rules(),
    )
    colleague = weekday_mornings(org, fhir_id="c", **rules())
    # One booking a day at most per person, so no two of a person's overlap.
    for schedule, days in ((first, (0, 2)), (colleague, (1, 3))):
        for day in days:
            start = local_nine(monday + timedelta(days=day), rng.choice([0, 15, 30]))
            AppointmentFactory(
                organization=org,
                schedule=schedule,
                practitioner_role=schedule.practitioner_role,
                start=start,
                end=start + timedelta(minutes=15),
            )
    # Often exactly at a slot's start (or at one less the notice): the edges of the clock.
    now = local_nine(monday + timedelta(days=rng.randrange(3)), rng.choice([0, 15, 20, 30, 7]))
    now -= timedelta(minutes=rng.choice([0, 45, 90]))
    held = local_nine(monday + timedelta(days=4), 15)
    AppointmentFactory(
        organization=org,
        schedule=colleague,
        practitioner_role=colleague.practitioner_role,
        status=AppointmentStatus.PENDING,
        held_until=now + timedelta(minutes=10),
        start=held,
        end=held + timedelta(minutes=15),
    )
    blocked = local_nine(monday + timedelta(days=1), 30)
    Slot.objects.create(
        organization=org,
        fhir_id="block",
        schedule=second,
        status=SlotStatus.BUSY_UNAVAILABLE,
        start=blocked,
        end=blocked + timedelta(minutes=20),
    )
    # A stored slot at a generated start of "a", and one with a generated id of "c".
    replaced = local_nine(monday + timedelta(days=3), 0)
    Slot.objects.create(
        organization=org,
        fhir_id="stored-a",
        schedule=first,
        status=SlotStatus.FREE,
        start=replaced,
        end=replaced + timedelta(minutes=15),
    )
    twin = local_nine(monday + timedelta(days=2), 45)
    Slot.objects.create(
        organization=org,
        fhir_id=f"c-{twin:%Y%m%dT%H%M%SZ}",
        schedule=colleague,
        status=SlotStatus.FREE,
        start=twin + timedelta(minutes=5),
        end=twin + timedelta(minutes=20),
    )
    windows = [
        Period(monday, monday + timedelta(days=7)),
        # Not whole hours: the snapshot is built wider and cut.
        Period(
            local_nine(monday, 17) - timedelta(minutes=rng.randrange(0, 90)),
            monday + timedelta(days=3, hours=rng.randrange(0, 24), minutes=5),
        ),
    ]
    for window in windows:
        for wanted in (None, ["free"], ["busy"], ["busy-tentative"], ["free", "busy-tentative"]):
            for cache in CACHES:
                cache.clear()

            def search_now(
                window: Period = window, wanted: list[str] | None = wanted
            ) -> selectors.SlotResults:
                return selectors.slot_search(
                    organization=org, window=window, statuses=wanted, now=now
                )

            from_lanes = search_now()
            page_from_lanes = [(r.id, r.status) for r in from_lanes[3:9]]
            misses = search_cache.slot_cache.misses
            from_index = search_now()
            assert search_cache.slot_cache.misses == misses, "the second search is cached"
            assert [(r.id, r.status) for r in from_index[3:9]] == page_from_lanes
            lanes_answer, index_answer = _answer(search_now()), _answer(from_index)
            assert _answer(from_lanes) == index_answer == lanes_answer
            # Sorted by start, then id, and the total is the rows' count.
            rows = index_answer[1]
            assert [(start, i) for i, _, start in rows] == sorted(
                (start, i) for i, _, start in rows
            )
            assert index_answer[0] == len(rows)
            assert not wanted or {status for _, status, _ in rows} <= set(wanted)


def test_a_results_instances_hold_the_rows_values_and_defer_the_rest(org: Organization) -> None:
    """A page's schedule and slot instances are built from the columns the search read
    (``selectors.common.loaded``); any other field is deferred and read from the row when
    asked, never a model default that is not the row's."""
    schedule = weekday_mornings(org, capacity=3, buffer_after_minutes=5)
    monday = next_monday()
    stored = Slot.objects.create(
        organization=org,
        schedule=schedule,
        fhir_id="stored-one",
        status=SlotStatus.BUSY,
        start=local_nine(monday, 30),
        end=local_nine(monday, 45),
        comment="imported",
        service_category=[{"code": "gp"}],
    )
    results = selectors.slot_search(
        organization=org,
        window=Period(local_nine(monday), local_nine(monday) + timedelta(hours=1)),
        now=monday - timedelta(days=1),
    )
    page = results[: len(results)]
    by_id = {r.id: r for r in page}
    assert set(by_id) >= {"stored-one"} and len(by_id) > 1
    made = by_id["stored-one"].slot
    assert made is not None
    assert (made.pk, made.fhir_id, made.status, made.start, made.end, made.comment) == (
        stored.pk,
        "stored-one",
        SlotStatus.BUSY,
        stored.start,
        stored.end,
        "imported",
    )
    assert made.service_category == [{"code": "gp"}] and made.schedule.fhir_id == schedule.fhir_id
    # Not read by the search: asked of the database, so the row's values, not defaults.
    with CaptureQueriesContext(connection) as asked:
        for result in page:
            assert result.schedule.pk == schedule.pk and result.schedule.organization is org
            assert result.schedule.capacity == 3
            assert result.schedule.buffer_after_minutes == 5
    assert len(asked) >= 1
