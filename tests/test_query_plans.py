"""Plans of the reads every uncached search and booking check runs (PostgreSQL).

A read that the planner answers from the wrong index costs nothing in a test's small
tables and milliseconds in a clinic's: the blocked-time read of the Slot search once
read and filtered every stored slot of the organisation up to the window's end (2.9 of
the 6 ms of a one-schedule day in a clinic of 36,000 stored slots). These tests look at
the plan of the compiled statement itself, as prepared statements run it (a generic plan:
its parameters unknown to the planner), over enough rows that a scan would show.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from scheduling.db.compiled_query import CompiledStatement, _native_placeholders
from scheduling.models import Organization, Schedule, Slot, SlotStatus
from scheduling.selectors import occupancy, slots
from tests.factories import ScheduleFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _generic_plan(statement: CompiledStatement, *arguments: Any) -> str:
    """EXPLAIN ANALYZE of a compiled statement as a prepared statement runs it once it has
    a generic plan: PREPAREd with PostgreSQL's own placeholders (Django's cursor would put
    the values into the text, and the planner would see them), EXECUTEd with the generic
    plan forced, so the planner knows none of the values."""
    sql, plan = statement.sql()
    prepared = [
        connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value
        for value in arguments
    ]
    params = [prepared[x] if is_argument else x for is_argument, x in plan]
    placeholders = ", ".join(["%s"] * len(params))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"PREPARE plan_probe AS {_native_placeholders(sql)}")
        try:
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cursor.execute(f"EXPLAIN (ANALYZE) EXECUTE plan_probe({placeholders})", params)
            explained = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE plan_probe")
    # A generic plan shows the parameters, not their values: the probe itself is checked.
    assert "$1" in explained, explained
    return explained


def _removed_by_filter(explained: str) -> int:
    return sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", explained))


def _quarter_hours(
    org: Organization, schedule: Schedule, prefix: str, start: datetime, count: int, status: str
) -> None:
    Slot.objects.bulk_create(
        Slot(
            organization=org,
            schedule=schedule,
            fhir_id=f"{prefix}-{n}",
            status=status,
            start=start + timedelta(minutes=15 * n),
            end=start + timedelta(minutes=15 * (n + 1)),
        )
        for n in range(count)
    )


def test_the_blocked_time_read_uses_an_index_on_the_status(org: Organization) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    schedule = ScheduleFactory(organization=org)
    start = datetime(2030, 1, 7, 8, tzinfo=UTC)
    # Four weeks of free stored slots, and one blocked hour in the last week.
    _quarter_hours(org, schedule, "free", start, 4 * 7 * 96, SlotStatus.FREE)
    blocked_at = start + timedelta(days=25, hours=1, minutes=7)
    Slot.objects.create(
        organization=org,
        schedule=schedule,
        fhir_id="blocked",
        status=SlotStatus.BUSY_UNAVAILABLE,
        start=blocked_at,
        end=blocked_at + timedelta(hours=1),
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE scheduling_slot")
    window_start, window_end = start + timedelta(days=25), start + timedelta(days=26)
    explained = _generic_plan(occupancy._BLOCKED, org.pk, window_start, window_end)
    assert "slot_org_status_end" in explained, explained
    # The one blocked slot is all it reads: no stored slot is read and thrown away.
    assert _removed_by_filter(explained) == 0, explained
    rows = occupancy._BLOCKED.rows(org.pk, window_start, window_end)
    assert [(row[4], row[5]) for row in rows] == [
        (int(blocked_at.timestamp()), int(blocked_at.timestamp()) + 3600)
    ]


def test_one_schedules_stored_slots_are_read_without_its_history(org: Organization) -> None:
    """A search with ``schedule=`` reads that schedule's stored slots of the window, not all
    of them from the first: an imported schedule brings years of past slots."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    schedule = ScheduleFactory(organization=org, fhir_id="imported")
    other = ScheduleFactory(organization=org, fhir_id="other")
    today = datetime(2030, 1, 7, 8, tzinfo=UTC)
    # Ninety days of history, then four weeks ahead, for both schedules.
    for each in (schedule, other):
        past = today - timedelta(days=90)
        _quarter_hours(org, each, f"{each.fhir_id}-past", past, 90 * 96, SlotStatus.BUSY)
        _quarter_hours(org, each, f"{each.fhir_id}-ahead", today, 28 * 96, SlotStatus.FREE)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE scheduling_slot")
    window_start, window_end = today + timedelta(days=3), today + timedelta(days=4)
    statement = slots._compiled(slots._stored_rows, 1)
    explained = _generic_plan(statement, org.pk, window_start, window_end, "imported")
    assert "slot_schedule_end" in explained, explained
    # What it throws away is at most the schedule's slots after the window, never its past.
    assert _removed_by_filter(explained) <= 25 * 96, explained
    rows = statement.rows(org.pk, window_start, window_end, "imported")
    assert len(rows) == 96 and {row[2] for row in rows} == {schedule.pk}
