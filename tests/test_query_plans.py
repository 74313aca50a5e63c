"""Plans of the reads every uncached search and booking check runs (PostgreSQL).

A read that the planner answers from the wrong index costs nothing in a test's small
tables and milliseconds in a clinic's: the blocked-time read of the Slot search once
read and filtered every stored slot of the organisation up to the window's end (2.9 of
the 6 ms of a one-schedule day in a clinic of 36,000 stored slots). These tests look at
the plan of the compiled statement itself, as prepared statements run it (a generic plan:
its parameters unknown to the planner), over enough rows that a scan would show.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from scheduling.models import Organization, Slot, SlotStatus
from scheduling.selectors import occupancy
from tests.factories import ScheduleFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _generic_plan(sql: str, params: list[Any]) -> str:
    """EXPLAIN ANALYZE of ``sql`` as a prepared statement with a generic plan."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT TEXT) {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_blocked_time_read_uses_an_index_on_the_status(org: Organization) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    schedule = ScheduleFactory(organization=org)
    start = datetime(2030, 1, 7, 8, tzinfo=UTC)
    # Four weeks of free stored slots, and one blocked hour in the last week.
    Slot.objects.bulk_create(
        Slot(
            organization=org,
            schedule=schedule,
            fhir_id=f"free-{n}",
            status=SlotStatus.FREE,
            start=start + timedelta(minutes=15 * n),
            end=start + timedelta(minutes=15 * (n + 1)),
        )
        for n in range(4 * 7 * 96)
    )
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
    sql, plan = occupancy._BLOCKED.sql()
    window_start, window_end = start + timedelta(days=25), start + timedelta(days=26)
    arguments = [
        org.pk,
        connection.ops.adapt_datetimefield_value(window_start),
        connection.ops.adapt_datetimefield_value(window_end),
    ]
    params = [arguments[x] if is_argument else x for is_argument, x in plan]
    explained = _generic_plan(sql, params)
    assert "slot_org_status_end" in explained, explained
    # The one blocked slot is all it reads: no stored slot is read and thrown away.
    assert "Rows Removed by Filter" not in explained, explained
    rows = occupancy._BLOCKED.rows(org.pk, window_start, window_end)
    assert [(row[4], row[5]) for row in rows] == [
        (int(blocked_at.timestamp()), int(blocked_at.timestamp()) + 3600)
    ]
