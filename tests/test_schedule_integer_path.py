"""The Schedule search's integer path (scheduling/selectors/schedules.py, issue 19).

Outside a transaction the common search (a window, no ids, actor or active) reads
integers and text, keeps each schedule's results per rule version, and the view maps
from resources kept per version. It must answer exactly as the instance path does, and
no cache may serve what another search, zone or version should see. These tests commit
(``transaction=True``): inside a test transaction the view takes the instance path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from rest_framework.test import APIClient

from fhir_api import views
from scheduling import selectors
from scheduling.db import search_cache
from scheduling.models import Organization, Schedule
from scheduling.recurrence import Period
from scheduling.selectors import schedules as schedule_selectors
from tests.api_helpers import assert_bundle, url
from tests.factories import PractitionerFactory, ScheduleFactory

pytestmark = pytest.mark.django_db(transaction=True)

AMS = ZoneInfo("Europe/Amsterdam")
SYDNEY = ZoneInfo("Australia/Sydney")


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    def clear() -> None:
        search_cache.schedule_cache.clear()
        views.mapped_schedules.clear()
        schedule_selectors._kept.clear()

    clear()
    yield
    clear()


@pytest.fixture
def mixed(org: Organization) -> list[Schedule]:
    """Daily across both of Amsterdam's DST changes, weekly with exdates, one in a southern
    zone, a stored one, one without a role, one without any actor, an inactive one."""
    return [
        ScheduleFactory(
            organization=org,
            fhir_id="daily",
            planning_start=datetime(2030, 3, 25, 9, tzinfo=AMS),
            planning_end=datetime(2030, 3, 25, 12, tzinfo=AMS),
            rrule="FREQ=DAILY",
        ),
        ScheduleFactory(
            organization=org,
            fhir_id="weekly",
            planning_start=datetime(2030, 3, 26, 8, tzinfo=AMS),
            planning_end=datetime(2030, 3, 26, 9, tzinfo=AMS),
            rrule="FREQ=WEEKLY;BYDAY=TU,TH",
            exdates=["2030-04-02T08:00:00+02:00", "2030-10-29T08:00:00+01:00"],
            service_category=[{"system": "http://example.org/sc", "code": "physio"}],
        ),
        ScheduleFactory(
            organization=org,
            fhir_id="sydney",
            planning_start=datetime(2030, 3, 25, 9, tzinfo=SYDNEY),
            planning_end=datetime(2030, 3, 25, 10, tzinfo=SYDNEY),
            rrule="FREQ=DAILY;INTERVAL=2",
            recurrence_timezone="Australia/Sydney",
        ),
        ScheduleFactory(
            organization=org,
            fhir_id="stored",
            planning_start=datetime(2030, 3, 30, 23, tzinfo=AMS),
            planning_end=datetime(2030, 3, 31, 4, tzinfo=AMS),
        ),
        ScheduleFactory(
            organization=org,
            fhir_id="no-role",
            practitioner_role=None,
            practitioner=PractitionerFactory(organization=org),
            planning_start=datetime(2030, 3, 27, 13, tzinfo=AMS),
            planning_end=datetime(2030, 3, 27, 17, tzinfo=AMS),
            rrule="FREQ=DAILY;COUNT=20",
            comment="afternoons",
        ),
        ScheduleFactory(
            organization=org,
            fhir_id="nobody",
            practitioner_role=None,
            practitioner=None,
            planning_start=datetime(2030, 3, 28, 7, tzinfo=AMS),
            planning_end=datetime(2030, 3, 28, 8, tzinfo=AMS),
            rrule="FREQ=DAILY",
        ),
        ScheduleFactory(
            organization=org,
            fhir_id="inactive",
            active=False,
            planning_start=datetime(2030, 3, 29, 7, tzinfo=AMS),
            planning_end=datetime(2030, 3, 29, 8, tzinfo=AMS),
            rrule="FREQ=DAILY",
        ),
    ]


QUERIES = [
    "Schedule?date=ge2030-03-27&date=lt2030-04-04&_count=500",  # spring forward
    "Schedule?date=ge2030-10-22&date=lt2030-11-01&_count=500",  # fall back
    "Schedule?date=ge2030-03-27&date=lt2030-04-04&service-category=physio&_count=500",
    "Schedule?date=ge2030-03-27&date=lt2030-04-04&_count=7&_offset=14",
    "Schedule?date=ge2030-03-27&date=lt2030-04-04&_include=Schedule:actor&_count=10",
    "Schedule?date=ge2030-03-27&date=lt2030-04-04&_summary=count",
]


@pytest.mark.parametrize("query", QUERIES)
def test_the_integer_path_answers_as_the_instance_path(
    api: APIClient, mixed: list[Schedule], query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    includes = "_include" in query

    def answer() -> bytes:
        response = api.get(url(query))
        assert_bundle(response, includes=includes)
        content: bytes = response.content
        # Kept resources are pasted in rendered: the bytes are those of rendering the dicts.
        assert content == orjson.dumps(orjson.loads(content))
        return content

    fast = [answer() for _ in range(2)]
    assert fast[0] == fast[1]  # built, then cached
    monkeypatch.setattr(views.MappedSchedules, "usable", staticmethod(lambda: False))
    search_cache.schedule_cache.clear()
    slow = answer()
    assert fast[0] == slow
    if "_summary" not in query:
        assert orjson.loads(slow)["entry"]


def window(start: datetime, days: int = 8) -> Period:
    return Period(start, start + timedelta(days=days))


def result_values(results: list[Any]) -> list[tuple[Any, ...]]:
    return [(r.order, r.id, r.period, r.row.pk, r.row.versions) for r in results]


def test_results_without_instances_never_answer_a_search_that_needs_them(
    org: Organization, mixed: list[Schedule]
) -> None:
    week = window(datetime(2030, 3, 27, tzinfo=AMS))
    light = selectors.schedule_search(organization=org, window=week, instances=False)
    assert light and all(r.row.schedule is None for r in light)
    full = selectors.schedule_search(organization=org, window=week)
    assert all(isinstance(r.row.schedule, Schedule) for r in full)
    assert result_values(light) == result_values(full)
    assert search_cache.schedule_cache.hits == 0  # two entries, one per kind


def test_kept_occurrences_follow_the_organisation_zone(
    org: Organization, mixed: list[Schedule]
) -> None:
    week = window(datetime(2030, 3, 27, tzinfo=UTC))
    before = selectors.schedule_search(organization=org, window=week, instances=False)
    org.timezone = "America/New_York"  # the rules without a zone of their own run there
    after = selectors.schedule_search(organization=org, window=week, instances=False)
    search_cache.schedule_cache.clear()
    schedule_selectors._kept.clear()
    fresh = selectors.schedule_search(organization=org, window=week, instances=False)
    assert result_values(after) == result_values(fresh) != result_values(before)
    sydney = [r.id for r in after if r.row.fhir_id == "sydney"]
    assert sydney == [r.id for r in before if r.row.fhir_id == "sydney"]  # its own zone


def test_a_fraction_of_a_second_takes_the_exact_path(org: Organization) -> None:
    ScheduleFactory(
        organization=org,
        fhir_id="odd",
        planning_start=datetime(2030, 3, 25, 9, 0, 0, 500_000, tzinfo=AMS),
        planning_end=datetime(2030, 3, 25, 10, tzinfo=AMS),
        rrule="FREQ=DAILY",
    )
    week = window(datetime(2030, 3, 27, tzinfo=AMS))
    assert (
        schedule_selectors._integer_search(organization=org, service_category=None, window=week)
        is None
    )
    light = selectors.schedule_search(organization=org, window=week, instances=False)
    assert all(isinstance(r.row.schedule, Schedule) for r in light)  # the instance path's
    full = selectors.schedule_search(organization=org, window=week)
    assert len(light) == 8 and result_values(light) == result_values(full)
    odd = Period(week.start + timedelta(microseconds=1), week.end)
    assert (
        schedule_selectors._integer_search(organization=org, service_category=None, window=odd)
        is None
    )


def test_a_schedule_changed_after_the_search_read_it_is_searched_again(
    api: APIClient, mixed: list[Schedule], monkeypatch: pytest.MonkeyPatch
) -> None:
    search = selectors.schedule_search
    calls: list[bool] = []

    def search_then_edit(**kwargs: Any) -> Any:
        results = search(**kwargs)
        calls.append(kwargs["instances"])
        if len(calls) == 1:  # between the search's read and the page's mapping
            Schedule.objects.filter(fhir_id="daily").update(comment="edited")
        return results

    monkeypatch.setattr(selectors, "schedule_search", search_then_edit)
    bundle = assert_bundle(api.get(url("Schedule?date=ge2030-03-27&date=lt2030-03-28")))
    assert calls == [False, True]
    daily = [e["resource"] for e in bundle["entry"] if e["resource"]["id"].startswith("daily-")]
    assert [resource.get("comment") for resource in daily] == ["edited"]


def test_rows_load_refuses_a_row_that_changed(org: Organization, mixed: list[Schedule]) -> None:
    week = window(datetime(2030, 3, 27, tzinfo=AMS))
    light = selectors.schedule_search(organization=org, window=week, instances=False)
    rows = {r.row for r in light}
    loaded = selectors.schedule_rows_load(organization=org, rows=rows)
    assert loaded is not None and set(loaded) == {row.pk for row in rows}
    practitioner = mixed[0].practitioner
    practitioner.family = "Renamed"
    practitioner.save()
    assert selectors.schedule_rows_load(organization=org, rows=rows) is None


def test_kept_pages_are_per_base_url_offset_and_count(
    api: APIClient, mixed: list[Schedule]
) -> None:
    query = "Schedule?date=ge2030-03-27&date=lt2030-04-04"

    def page(extra: str, host: str = "testserver") -> list[str]:
        bundle = assert_bundle(api.get(url(query + extra), HTTP_HOST=host))
        return [entry["fullUrl"] for entry in bundle["entry"]]

    first = page("&_count=5")
    assert search_cache.schedule_cache.misses == 1  # the rest: the same cached list
    assert page("&_count=5&_offset=5") != first
    assert page("&_count=6")[:5] == first and len(page("&_count=6")) == 6
    assert page("&_count=5", host="localhost") == [
        full_url.replace("//testserver/", "//localhost/") for full_url in first
    ]
    assert page("&_count=5") == first
    assert search_cache.schedule_cache.misses == 1
