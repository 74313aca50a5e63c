"""Slot search: stored slots plus slots generated from schedules, free or busy."""

from __future__ import annotations

import bisect
import heapq
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, overload

from django.db.models import (
    Case,
    F,
    Q,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast

from scheduling import recurrence
from scheduling.db import search_cache
from scheduling.db.compiled_query import EpochSeconds
from scheduling.db.epoch import EpochMicros, plain_rows
from scheduling.models import (
    INACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    Organization,
    Schedule,
    Slot,
    SlotStatus,
)
from scheduling.recurrence import Period
from scheduling.selectors.common import (
    Token,
    generated_not_found,
    ids_and_parents,
    occurrence_stamps,
    token_matches,
    ts,
    window_q,
)


@dataclass(slots=True)
class GeneratedSlot:
    """A slot cut from a schedule's availability; never stored."""

    id: str
    start: datetime
    end: datetime
    status: str


class SlotResult:
    """Either a stored ``slot`` or a ``generated`` slot of ``schedule``.

    A plain class with precomputed ``id``/``start``/``status``: a week of slots is thousands
    of these, and sorting them must not go through properties.
    """

    __slots__ = ("generated", "id", "schedule", "slot", "start", "status")

    def __init__(
        self,
        schedule: Schedule,
        slot: Slot | None = None,
        generated: GeneratedSlot | None = None,
    ) -> None:
        self.schedule = schedule
        self.slot = slot
        self.generated = generated
        source = slot if slot is not None else generated
        assert source is not None
        self.id: str = source.fhir_id if slot is not None else generated.id  # type: ignore[union-attr]
        self.start: datetime = source.start
        self.status: str = source.status


def slot_get(*, organization: Organization, fhir_id: str) -> Slot:
    """A stored slot; NotFound (naming the schedule) for a generated slot id."""
    slot = (
        Slot.objects.filter(organization=organization, fhir_id=fhir_id)
        .select_related("schedule")
        .first()
    )
    if slot is not None:
        return slot
    split = recurrence.split_occurrence_id(fhir_id)
    parent_exists = (
        split is not None
        and Schedule.objects.filter(organization=organization, fhir_id=split[0]).exists()
    )
    raise generated_not_found("Slot", fhir_id, parent_exists, split[0] if split else "")


def _busy_intervals(
    organization: Organization, schedule_pks: list[int], window: Period, *, narrow: bool
) -> dict[int, list[tuple[int, int]]]:
    """Active appointments per schedule in the window, as integer timestamps (one query).

    Plain rows come as integer pairs, not model instances: a busy week is a thousand rows,
    and building models for them used to be the largest cost of a slot search. Plain rows
    are bounded on both sides (``end`` from below, through ``appt_org_end``) and
    the few recurring rows through ``appt_org_recurring_start`` (a BitmapOr on
    PostgreSQL), so the query does not grow with the history. Unless ``narrow``, the
    schedules are not listed in the SQL (a list of hundreds of ids costs the database more
    than the rows of other schedules it would keep out); those rows are skipped here.
    """
    busy: dict[int, list[tuple[int, int]]] = defaultdict(list)
    if not schedule_pks:
        return busy
    plain = Q(rrule="")
    appointments = Appointment.objects.filter(organization=organization)
    if narrow:
        appointments = appointments.filter(schedule_id__in=schedule_pks)
    rows = (
        appointments.filter(window_q(window, "start", "end"))
        .exclude(status__in=list(INACTIVE_APPOINTMENT_STATUSES))
        .order_by()
        .values_list(
            "schedule_id",
            EpochSeconds("start"),
            EpochSeconds("end"),
            "rrule",
            # The rule's own columns only for the few recurring rows: NULL is free to load.
            Case(When(plain, then=None), default=EpochMicros("start")),
            Case(When(plain, then=None), default=EpochMicros("end")),
            Case(When(plain, then=Value("")), default=F("recurrence_timezone")),
            Case(When(plain, then=None), default=Cast("exdates", TextField())),
        )
    )
    window_start, window_end = ts(window.start), ts(window.end)
    wanted = set(schedule_pks)
    for schedule_pk, start_ts, end_ts, rrule, start_us, end_us, tzid, exdates in plain_rows(rows):
        if schedule_pk not in wanted:
            continue
        if not rrule:
            busy[schedule_pk].append((start_ts, end_ts))
            continue
        busy[schedule_pk].extend(
            occurrence_stamps(
                rrule=rrule,
                first_start=start_us,
                first_end=end_us,
                tzid=tzid or organization.timezone,
                exdates=exdates,
                window=window,
                window_start=window_start,
                window_end=window_end,
            )
        )
    return busy


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, overlapping intervals merged: ends become non-decreasing, so one sweep works."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start < out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


@lru_cache(maxsize=8192)
def _stamp(ts: int) -> str:
    # Many schedules share slot starts: each start is formatted once per process.
    return f"{datetime.fromtimestamp(ts, UTC):%Y%m%dT%H%M%SZ}"


_STORED_SLOT_COLUMNS = (
    "pk",
    "fhir_id",
    "schedule_id",
    "schedule__fhir_id",
    "status",
    "start",
    "end",
    "service_category",
    "overbooked",
    "comment",
    "updated_at",
)


class SlotResults(Sequence[SlotResult]):
    """The matches of a slot search, ordered by start then id, built only as far as read.

    ``len()`` is the total, counted without building anything. Reading a page merges the
    per-schedule streams (each already sorted) with :func:`heapq.merge` and stops at the
    page's end, so a one-week search of a busy clinic builds a page, not thousands of slots.
    Rows are ``(start_ts, id, kind, payload)``: kind 0 is a stored slot (payload: its
    columns), kind 1 a generated one (payload: schedule pk, start, end, status).
    """

    __slots__ = (
        "_done",
        "_instances",
        "_merged",
        "_organization",
        "_rows",
        "_schedules",
        "_total",
        "memo",
    )

    def __init__(
        self,
        *,
        organization: Organization,
        total: int,
        streams: list[Iterator[tuple[int, str, int, Any]]],
        schedules: dict[int, tuple[str, str]],
        instances: dict[int, Schedule] | None = None,
        memo: dict[Any, Any] | None = None,
    ) -> None:
        self._organization = organization
        self._total = total
        self._merged = heapq.merge(*streams)
        self._rows: list[tuple[int, str, int, Any]] = []
        self._done = False
        # pk -> (fhir_id, service_category as JSON text); shared with the cache: read only.
        self._schedules = schedules
        # Instances are only read once made, so a cached snapshot's may be shared.
        self._instances: dict[int, Schedule] = {} if instances is None else instances
        #: For the API layer: resources it mapped from these results, by (id, status). Shared
        #: by every search served from one cached snapshot, so the dicts must not change.
        self.memo: dict[Any, Any] = {} if memo is None else memo

    def __len__(self) -> int:
        return self._total

    def _fill(self, stop: int | None) -> None:
        while not self._done and (stop is None or len(self._rows) < stop):
            row = next(self._merged, None)
            if row is None:
                self._done = True
            else:
                self._rows.append(row)

    def _make(self, row: tuple[int, str, int, Any]) -> SlotResult:
        _, slot_id, kind, payload = row
        organization = self._organization
        if kind == 0:
            values = dict(zip(_STORED_SLOT_COLUMNS, payload, strict=True))
            schedule = Schedule(
                pk=values.pop("schedule_id"),
                organization=organization,
                fhir_id=values.pop("schedule__fhir_id"),
            )
            slot = Slot(organization=organization, schedule=schedule, **values)
            return SlotResult(schedule, slot=slot)
        schedule_pk, start_ts, end_ts, status = payload
        schedule = self._instances.get(schedule_pk)  # type: ignore[assignment]
        if schedule is None:
            fhir_id, categories = self._schedules[schedule_pk]
            # One instance per schedule, shared by its slots on the page.
            schedule = Schedule(
                pk=schedule_pk,
                organization=organization,
                fhir_id=fhir_id,
                service_category=json.loads(categories or "[]"),
            )
            self._instances[schedule_pk] = schedule
        return SlotResult(
            schedule,
            generated=GeneratedSlot(
                slot_id,
                datetime.fromtimestamp(start_ts, UTC),
                datetime.fromtimestamp(end_ts, UTC),
                status,
            ),
        )

    @overload
    def __getitem__(self, index: int) -> SlotResult: ...
    @overload
    def __getitem__(self, index: slice) -> list[SlotResult]: ...
    def __getitem__(self, index: int | slice) -> SlotResult | list[SlotResult]:
        if isinstance(index, slice):
            negative = any(v is not None and v < 0 for v in (index.start, index.stop))
            self._fill(None if negative else index.stop)
            return [self._make(row) for row in self._rows[index]]
        self._fill(None if index < 0 else index + 1)
        return self._make(self._rows[index])


@dataclass(frozen=True, slots=True)
class _SlotGrid:
    """The slots a window's schedules generate, before any booking: depends on schedules only.

    ``rows`` are ``(start_ts, id, 1, (schedule pk, start_ts, end_ts))`` sorted by start then
    id, across all schedules.
    """

    rows: list[tuple[int, str, int, Any]]
    schedules: dict[int, tuple[str, str]]  # pk -> (fhir_id, service_category as JSON)


@dataclass(frozen=True, slots=True)
class _SlotSnapshot:
    """Everything a slot search needs except ``now`` and the statuses: what is cached.

    Rows are ``(start_ts, id, kind, payload)`` sorted by start then id. ``open`` holds the
    generated slots no appointment or busy-unavailable slot blocks: free unless they have
    started, which only the request's ``now`` decides. ``blocked`` holds the others.
    """

    stored: list[tuple[int, str, int, Any]]
    open: list[tuple[int, str, int, Any]]
    open_starts: list[int]
    blocked: list[tuple[int, str, int, Any]]
    schedules: dict[int, tuple[str, str]]  # pk -> (fhir_id, service_category as JSON)
    #: Schedule instances made for pages, shared by every search served from this snapshot.
    instances: dict[int, Schedule] = field(default_factory=dict)
    #: Resources the API layer mapped for pages of this snapshot (``SlotResults.memo``).
    memo: dict[Any, Any] = field(default_factory=dict)

    @property
    def weight(self) -> int:
        return len(self.stored) + len(self.open) + len(self.blocked)


def _slot_grid(
    *,
    organization: Organization,
    window: Period,
    parents: set[str] | None,
    service_category: Sequence[Token] | None,
) -> _SlotGrid:
    schedules_qs = Schedule.objects.filter(
        organization=organization, active=True, slot_minutes__isnull=False
    ).filter(window_q(window, "planning_start", "planning_end"))
    if parents is not None:
        schedules_qs = schedules_qs.filter(fhir_id__in=parents)
    # Integers and JSON text, decoded only where needed: two hundred schedules are read
    # by every search, and their datetimes and JSON cost more than the rest of the work.
    schedules = plain_rows(
        schedules_qs.order_by().values_list(
            "pk",
            "fhir_id",
            Cast("service_category", TextField()),
            "slot_minutes",
            EpochMicros("planning_start"),
            EpochMicros("planning_end"),
            "rrule",
            "recurrence_timezone",
            Cast("exdates", TextField()),
        )
    )
    window_start, window_end = ts(window.start), ts(window.end)
    rows: list[tuple[int, str, int, Any]] = []
    infos: dict[int, tuple[str, str]] = {}
    for pk, fhir_id, categories, minutes, first_start, first_end, rrule, tzid, exdates in schedules:
        if service_category and not token_matches(json.loads(categories or "[]"), service_category):
            continue
        if rrule:
            windows = occurrence_stamps(
                rrule=rrule,
                first_start=first_start,
                first_end=first_end,
                tzid=tzid or organization.timezone,
                exdates=exdates,
                window=window,
                window_start=window_start,
                window_end=window_end,
            )
        else:
            windows = [(first_start // 1_000_000, first_end // 1_000_000)]
        step = minutes * 60
        starts: set[int] = set()  # overlapping windows must not yield a slot twice
        for available_start, available_end in windows:
            starts.update(range(available_start, available_end - step + 1, step))
        # Slots overlapping the window: start < window end and start + step > window start.
        ordered = [t for t in sorted(starts) if window_start - step < t < window_end]
        if not ordered:
            continue
        infos[pk] = (fhir_id, categories)
        prefix = f"{fhir_id}-"
        rows.extend((t, prefix + _stamp(t), 1, (pk, t, t + step)) for t in ordered)
    rows.sort(key=_row_key)
    return _SlotGrid(rows=rows, schedules=infos)


def _slot_snapshot(
    *,
    organization: Organization,
    window: Period,
    parents: set[str] | None,
    grid: _SlotGrid,
    service_category: Sequence[Token] | None,
) -> _SlotSnapshot:
    """Which of the grid's slots bookings and stored slots block or replace."""
    busy = _busy_intervals(organization, list(grid.schedules), window, narrow=parents is not None)

    # Stored slots are few; with ``end`` bounded below, ``slot_org_end`` keeps this from
    # reading the whole history.
    stored_qs = Slot.objects.filter(
        organization=organization, start__lt=window.end, end__gt=window.start
    ).order_by()
    if parents is not None:
        stored_qs = stored_qs.filter(schedule__fhir_id__in=parents)
    stored_rows: list[tuple[int, str, int, Any]] = []
    # Generated slots a stored one replaces: same schedule and start, or the same id.
    replaced: set[tuple[int, int]] = set()
    twins: set[tuple[str, int]] = set()  # (schedule fhir id, start) of generated-like ids
    for values in stored_qs.values_list(*_STORED_SLOT_COLUMNS):
        _pk, fhir_id, schedule_pk, _, status, start, end, categories = values[:8]
        start_ts = ts(start)
        replaced.add((schedule_pk, start_ts))
        twin = recurrence.split_occurrence_id(fhir_id)
        if twin is not None:
            twins.add((twin[0], ts(twin[1])))
        if status == SlotStatus.BUSY_UNAVAILABLE:
            busy[schedule_pk].append((start_ts, ts(end)))
        if service_category and not token_matches(categories, service_category):
            continue
        stored_rows.append((start_ts, fhir_id, 0, values))
    stored_rows.sort(key=_row_key)

    open_rows: list[tuple[int, str, int, Any]] = []
    blocked_rows: list[tuple[int, str, int, Any]] = []
    # One sweep in the grid's global order, with a cursor per schedule into its merged
    # busy intervals (merged intervals have non-decreasing ends; a schedule's slots come
    # in increasing starts).
    cursors: dict[int, list[Any]] = {pk: [_merged(found), 0] for pk, found in busy.items() if found}
    for row in grid.rows:
        slot_start, _, _, (pk, _, slot_end) = row
        if replaced and (
            (pk, slot_start) in replaced or (grid.schedules[pk][0], slot_start) in twins
        ):
            continue
        cursor = cursors.get(pk)
        if cursor is None:
            open_rows.append(row)
            continue
        intervals, i = cursor
        n = len(intervals)
        while i < n and intervals[i][1] <= slot_start:
            i += 1
        cursor[1] = i
        if i < n and intervals[i][0] < slot_end:
            blocked_rows.append(row)
        else:
            open_rows.append(row)
    return _SlotSnapshot(
        stored=stored_rows,
        open=open_rows,
        open_starts=[row[0] for row in open_rows],
        blocked=blocked_rows,
        schedules=grid.schedules,
    )


def _row_key(row: tuple[int, str, int, Any]) -> tuple[int, str]:
    return row[0], row[1]


def _with_status(
    rows: list[tuple[int, str, int, Any]], lo: int, hi: int, status: str
) -> Iterator[tuple[int, str, int, Any]]:
    # Lazily, and only as far as a page reads: a week of slots is thousands of rows.
    for index in range(lo, hi):
        start, slot_id, kind, (schedule_pk, slot_start, slot_end) = rows[index]
        yield start, slot_id, kind, (schedule_pk, slot_start, slot_end, status)


def slot_search(
    *,
    organization: Organization,
    window: Period,
    schedule_ids: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
    service_category: Sequence[Token] | None = None,
    now: datetime,
) -> SlotResults:
    """Stored slots plus slots generated from active schedules with a slot duration.

    A generated slot is busy when an active appointment of its schedule or a stored
    busy-unavailable slot overlaps it, or when it starts before ``now``; else free. A
    generated slot with the id or start of a stored slot of the same schedule is left out
    (the stored one wins). A fixed number of queries, whatever the size of the result,
    and none when the organisation's data is unchanged since the same search was cached
    (``scheduling.db.search_cache``). Ordered by start, then id.
    """
    parents: set[str] | None = None
    if schedule_ids is not None:
        _, parents = ids_and_parents(schedule_ids)
    key = (
        "slot",
        window.start,
        window.end,
        frozenset(parents) if parents is not None else None,
        tuple(service_category) if service_category else None,
    )

    def build_grid() -> tuple[_SlotGrid, int]:
        grid = _slot_grid(
            organization=organization,
            window=window,
            parents=parents,
            service_category=service_category,
        )
        return grid, len(grid.rows)

    def build() -> tuple[_SlotSnapshot, int]:
        grid = search_cache.slot_grid_cache.get_or_build(
            organization, key, build_grid, bookings=False
        )
        snapshot = _slot_snapshot(
            organization=organization,
            window=window,
            parents=parents,
            grid=grid,
            service_category=service_category,
        )
        return snapshot, snapshot.weight

    snapshot = search_cache.slot_cache.get_or_build(organization, key, build)

    wanted_status = set(statuses) if statuses else None
    free, busy_status = str(SlotStatus.FREE), str(SlotStatus.BUSY)
    stored = [row for row in snapshot.stored if wanted_status is None or row[3][4] in wanted_status]
    total = len(stored)
    streams: list[Iterator[tuple[int, str, int, Any]]] = [iter(stored)]
    # Generated slots that have started are busy, never free.
    started = bisect.bisect_left(snapshot.open_starts, ts(now))
    if wanted_status is None or free in wanted_status:
        total += len(snapshot.open) - started
        streams.append(_with_status(snapshot.open, started, len(snapshot.open), free))
    if wanted_status is None or busy_status in wanted_status:
        total += len(snapshot.blocked) + started
        streams.append(_with_status(snapshot.blocked, 0, len(snapshot.blocked), busy_status))
        streams.append(_with_status(snapshot.open, 0, started, busy_status))
    return SlotResults(
        organization=organization,
        total=total,
        streams=streams,
        schedules=snapshot.schedules,
        instances=snapshot.instances,
        memo=snapshot.memo,
    )
