"""Slot search: stored slots plus slots generated from schedules, free or busy."""

from __future__ import annotations

import bisect
import heapq
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple, overload

from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast

from scheduling import availability, recurrence
from scheduling.availability import NO_RULES
from scheduling.db import search_cache
from scheduling.db.compiled_query import CompiledModelQuery, CompiledStatement, rows_of_each
from scheduling.db.epoch import EpochMicros, plain_rows
from scheduling.models import (
    Organization,
    Schedule,
    Slot,
    SlotStatus,
    occupant_key,
)
from scheduling.recurrence import Period
from scheduling.selectors.common import (
    Token,
    generated_not_found,
    ids_and_parents,
    loaded,
    occurrence_stamps,
    occurrence_suffix,
    token_matches,
    ts,
    window_q,
)
from scheduling.selectors.occupancy import Occupancies, occupancies, occupied_read, rules_of


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


class PageSlot(NamedTuple):
    """One slot of a page as plain values, for a caller that renders it without model
    instances (the API: a page of a search that is not cached is a hundred of these, and
    building a Schedule, a Slot and two datetimes for each cost more than the search).

    Instants are whole epoch seconds (a resource's instants have seconds precision);
    ``categories`` is the service category as stored, JSON text. ``stored`` is None for a
    generated slot, else the stored row's ``(overbooked, comment, updated_at, version)``
    (``updated_at`` in whole epoch seconds).
    """

    id: str
    status: str
    start: int
    end: int
    schedule_pk: int
    schedule_id: str
    categories: str | None
    stored: tuple[bool, str, int, int] | None


class PageSlots(Sequence[PageSlot]):
    """A view of :class:`SlotResults` whose items are :class:`PageSlot`: the same matches in
    the same order, built straight from the search's rows."""

    __slots__ = ("_results",)

    def __init__(self, results: SlotResults) -> None:
        self._results = results

    def __len__(self) -> int:
        return len(self._results)

    @overload
    def __getitem__(self, index: int) -> PageSlot: ...
    @overload
    def __getitem__(self, index: slice) -> list[PageSlot]: ...
    def __getitem__(self, index: int | slice) -> PageSlot | list[PageSlot]:
        results = self._results
        if isinstance(index, slice):
            return [results._plain(row) for row in results._rows_at(index)]
        results._fill(None if index < 0 else index + 1)
        return results._plain(results._rows[index])


#: (organisation id, slot id): the one stored slot with its schedule; ids are unique per
#: organisation, so no order is needed.
_SLOT_BY_ID = CompiledModelQuery(
    lambda organization_id, fhir_id: (
        Slot.objects.filter(organization_id=organization_id, fhir_id=fhir_id)
        .select_related("schedule")
        .order_by()
    ),
    kinds="ss",
)


def slot_get(*, organization: Organization, fhir_id: str) -> Slot:
    """A stored slot; NotFound (naming the schedule) for a generated slot id."""
    slot: Slot | None = _SLOT_BY_ID.first(organization.pk, fhir_id)
    if slot is not None:
        return slot
    split = recurrence.split_occurrence_id(fhir_id)
    parent_exists = (
        split is not None
        and Schedule.objects.filter(organization=organization, fhir_id=split[0]).exists()
    )
    raise generated_not_found("Slot", fhir_id, parent_exists, split[0] if split else "")


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
    "version",
)


#: The same columns as the snapshot reads them: instants as integer microseconds since
#: 1970, JSON as text (converted back for a page's rows only).
_STORED_SLOT_SQL = (
    "pk",
    "fhir_id",
    "schedule_id",
    "schedule__fhir_id",
    "status",
    EpochMicros("start"),
    EpochMicros("end"),
    Cast("service_category", TextField()),
    "overbooked",
    "comment",
    EpochMicros("updated_at"),
    "version",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Page results a snapshot keeps for the searches it serves (the first pages, in practice).
_MADE_PER_SNAPSHOT = 2_000


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
        "_made",
        "_merged",
        "_organization",
        "_rows",
        "_schedules",
        "_stored_schedules",
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
        made: dict[tuple[str, str], SlotResult] | None = None,
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
        self._stored_schedules: dict[int, Schedule] = {}
        # Results made for pages, by (id, status): shared like ``instances``, so a cached
        # snapshot makes a page's results (and their model instances) once, not per search.
        self._made: dict[tuple[str, str], SlotResult] = {} if made is None else made
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
        key = (slot_id, payload[4] if kind == 0 else payload[3])
        found = self._made.get(key)
        if found is None:
            found = self._make_new(row)
            if len(self._made) < _MADE_PER_SNAPSHOT:
                self._made[key] = found
        return found

    def _make_new(self, row: tuple[int, str, int, Any]) -> SlotResult:
        _, slot_id, kind, payload = row
        organization = self._organization
        if kind == 0:
            (
                pk,
                fhir_id,
                schedule_pk,
                schedule_fhir_id,
                status,
                start,
                end,
                categories,
                overbooked,
                comment,
                updated_at,
                version,
            ) = payload
            # One instance per schedule, shared by its slots on the page.
            schedule = self._stored_schedules.get(schedule_pk)
            if schedule is None:
                schedule = self._stored_schedules[schedule_pk] = loaded(
                    Schedule, organization, id=schedule_pk, fhir_id=schedule_fhir_id
                )
            # The snapshot keeps instants as microseconds and JSON as text (see
            # ``_slot_snapshot``); SQLite gives booleans as 0/1.
            slot = loaded(
                Slot,
                organization,
                id=pk,
                fhir_id=fhir_id,
                schedule_id=schedule_pk,
                status=status,
                start=_EPOCH + timedelta(microseconds=start),
                end=_EPOCH + timedelta(microseconds=end),
                service_category=json.loads(categories or "[]"),
                overbooked=bool(overbooked),
                comment=comment,
                updated_at=_EPOCH + timedelta(microseconds=updated_at),
                version=version,
            )
            Slot.schedule.field.set_cached_value(slot, schedule)
            return SlotResult(schedule, slot=slot)
        schedule_pk, start_ts, end_ts, status = payload
        schedule = self._instances.get(schedule_pk)
        if schedule is None:
            fhir_id, categories = self._schedules[schedule_pk]
            # One instance per schedule, shared by its slots on the page.
            schedule = loaded(
                Schedule,
                organization,
                id=schedule_pk,
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

    def _plain(self, row: tuple[int, str, int, Any]) -> PageSlot:
        start, slot_id, kind, payload = row
        if kind == 1:
            schedule_pk, _, end, status = payload
            schedule_id, categories = self._schedules[schedule_pk]
            return PageSlot(slot_id, status, start, end, schedule_pk, schedule_id, categories, None)
        # Stored columns keep instants as microseconds (see ``_slot_snapshot``): floored to
        # the second, as a resource's instants are written; SQLite gives booleans as 0/1.
        (
            _pk,
            _,
            schedule_pk,
            schedule_id,
            status,
            _,
            end,
            categories,
            overbooked,
            comment,
            updated_at,
            version,
        ) = payload
        return PageSlot(
            slot_id,
            status,
            start,
            end // 1_000_000,
            schedule_pk,
            schedule_id,
            categories,
            (bool(overbooked), comment, updated_at // 1_000_000, version),
        )

    def _rows_at(self, index: slice) -> list[tuple[int, str, int, Any]]:
        negative = any(v is not None and v < 0 for v in (index.start, index.stop))
        self._fill(None if negative else index.stop)
        return self._rows[index]

    def plain(self) -> PageSlots:
        """These matches as :class:`PageSlot` values (see there)."""
        return PageSlots(self)

    @overload
    def __getitem__(self, index: int) -> SlotResult: ...
    @overload
    def __getitem__(self, index: slice) -> list[SlotResult]: ...
    def __getitem__(self, index: int | slice) -> SlotResult | list[SlotResult]:
        if isinstance(index, slice):
            return [self._make(row) for row in self._rows_at(index)]
        self._fill(None if index < 0 else index + 1)
        return self._make(self._rows[index])


#: The schedule columns of its booking rules, in the order :func:`rules_of` takes them.
_RULE_COLUMNS = (
    "minimum_notice_minutes",
    "maximum_advance_days",
    "buffer_before_minutes",
    "buffer_after_minutes",
    "capacity",
)


@dataclass(frozen=True, slots=True)
class _Lane:
    """One schedule's generated slots in a window, before any booking: its slot starts
    (epoch seconds, sorted, distinct), each ``step`` seconds long."""

    pk: int
    fhir_id: str
    step: int
    starts: list[int]
    occupant: str  # whose time the slots are
    rules: availability.Rules  # NO_RULES when the schedule has none
    keyed: bool  # whether its slots are asked by key (a schedule with rules)
    #: Its rows ``(start_ts, id, 1, (pk, start_ts, end_ts))``, once made (:meth:`rows`).
    made: dict[str, list[tuple[int, str, int, Any]]] = field(default_factory=dict)

    def rows(self) -> list[tuple[int, str, int, Any]]:
        """Every slot of the lane as a row, made once per grid: the grid outlives bookings,
        so the index of each snapshot after a booking only sorts the rows into lists."""
        found = self.made.get("")
        if found is None:
            pk, step, parent = self.pk, self.step, self.fhir_id
            found = self.made[""] = [
                (s, parent + occurrence_suffix(s), 1, (pk, s, s + step)) for s in self.starts
            ]
        return found


@dataclass(frozen=True, slots=True)
class _SlotGrid:
    """The slots a window's schedules generate, before any booking: depends on schedules
    only. Kept as one lane per schedule, not as rows: a week of a clinic is thousands of
    slots, and a search that is answered once needs a page of them, not all."""

    lanes: list[_Lane]
    schedules: dict[int, tuple[str, str]]  # pk -> (fhir_id, service_category as JSON)
    rules: dict[int, availability.Rules]  # pk -> booking rules (absent: none)

    @property
    def weight(self) -> int:
        return sum(len(lane.starts) for lane in self.lanes)


@dataclass(frozen=True, slots=True)
class _Verdict:
    """The engine's verdict on one lane: the starts that are not free by what occupies the
    occupant (``marked``: busy or busy-tentative, also as sorted lists per status) and the
    starts a stored slot replaces (``skipped``). Every other start is free by occupancy; the
    clock (started, notice, advance) is the request's to apply."""

    lane: _Lane
    marked: dict[int, str]
    busy: list[int]
    tentative: list[int]
    skipped: frozenset[int]
    skipped_starts: list[int]


@dataclass(frozen=True, slots=True)
class _GeneratedIndex:
    """The generated slots of a snapshot as rows ``(start_ts, id, 1, (schedule pk, start_ts,
    end_ts))`` sorted by start then id, by the engine's verdict, for a snapshot that serves
    more than one search (see ``_SlotSnapshot.index``): a request then only bisects at now.

    ``open``: free by occupancy, of schedules without a notice or advance rule (free unless
    started); ``clocked``: free by occupancy, of schedules whose notice or advance rule the
    clock decides per request; ``tentative`` (a live hold) and ``blocked``.
    """

    open: list[tuple[int, str, int, Any]]
    open_starts: list[int]
    clocked: list[tuple[int, str, int, Any]]
    tentative: list[tuple[int, str, int, Any]]
    blocked: list[tuple[int, str, int, Any]]


@dataclass(frozen=True, slots=True)
class _SlotSnapshot:
    """Everything a slot search needs except ``now``: what is cached.

    Stored rows are ``(start_ts, id, 0, columns)`` sorted by start then id, with their
    status by the engine (a stored free slot is busy when its occupant is occupied), sorted
    into lists the clock does and does not change: a clinic imported from another system
    has thousands a week, which a request must not walk. Generated slots are the grid's
    lanes with the engine's verdict on each (``verdicts``); a snapshot asked again indexes
    them once (:meth:`index`). ``valid_until``: the first live hold's expiry, when the
    snapshot must be rebuilt although no row changed.
    """

    #: Stored slots the engine found free, of schedules without a notice or advance rule:
    #: free until they start (``stored_open_starts``), busy after, like generated ones.
    stored_open: list[tuple[int, str, int, Any]]
    stored_open_starts: list[int]
    #: Stored slots free by occupancy, of schedules whose notice or advance rule the clock
    #: decides per request.
    stored_clocked: list[tuple[int, str, int, Any]]
    #: The other stored slots by their (engine's) status, which the clock does not change.
    stored_fixed: dict[str, list[tuple[int, str, int, Any]]]
    verdicts: list[_Verdict]
    schedules: dict[int, tuple[str, str]]  # pk -> (fhir_id, service_category as JSON)
    rules: dict[int, availability.Rules] = field(default_factory=dict)  # by schedule pk
    valid_until: int | None = None
    #: Schedule instances made for pages, shared by every search served from this snapshot.
    instances: dict[int, Schedule] = field(default_factory=dict)
    #: Resources the API layer mapped for pages of this snapshot (``SlotResults.memo``).
    memo: dict[Any, Any] = field(default_factory=dict)
    #: Results made for pages of this snapshot, by (id, status) (``SlotResults._made``).
    made: dict[tuple[str, str], SlotResult] = field(default_factory=dict)
    #: The generated index, once made (``index``); a dict so the frozen snapshot can keep it.
    indexed: dict[str, _GeneratedIndex] = field(default_factory=dict)

    @property
    def weight(self) -> int:
        return (
            len(self.stored_open)
            + len(self.stored_clocked)
            + sum(len(rows) for rows in self.stored_fixed.values())
            + sum(len(verdict.lane.starts) for verdict in self.verdicts)
        )

    def index(self) -> _GeneratedIndex:
        """The generated rows sorted once for every later search of this snapshot (two
        threads may both make it: the same value, and the last one kept)."""
        found = self.indexed.get("")
        if found is None:
            found = self.indexed[""] = _index(self.verdicts)
        return found


def _grid_rows(
    organization: Organization, start: datetime, end: datetime, parents: Sequence[str] | None
) -> QuerySet[Any]:
    """The active schedules with a slot duration that may have slots in ``[start, end)``
    (of ``parents`` only, if given), as the columns :func:`_slot_grid` reads: integers
    and JSON text, decoded only where needed, since two hundred schedules are read by
    every search and their datetimes and JSON cost more than the rest of the work."""
    schedules = Schedule.objects.filter(
        organization=organization, active=True, slot_minutes__isnull=False
    ).filter(window_q(Period(start, end), "planning_start", "planning_end"))
    if parents is not None:
        schedules = schedules.filter(fhir_id__in=parents)
    return schedules.order_by().values_list(
        "pk",
        "fhir_id",
        Cast("service_category", TextField()),
        "slot_minutes",
        EpochMicros("planning_start"),
        EpochMicros("planning_end"),
        "rrule",
        "recurrence_timezone",
        Cast("exdates", TextField()),
        "practitioner_id",
        "practitioner_role_id",
        "practitioner_role__practitioner_id",
        *_RULE_COLUMNS,
    )


def _stored_rows(
    organization: Organization, start: datetime, end: datetime, parents: Sequence[str] | None
) -> QuerySet[Any]:
    """The stored slots overlapping ``[start, end)`` (of the ``parents`` schedules only, if
    given) with their schedule's occupant and rule columns. Instants as integer
    microseconds and JSON as text, straight from the cursor: a clinic of stored slots has
    thousands in a week, and parsing their datetimes and JSON cost more than the rest of
    the build; a page converts only its own rows (``SlotResults._make``). With ``end``
    bounded below, ``slot_org_end`` keeps this from reading the whole history."""
    stored = Slot.objects.filter(organization=organization, start__lt=end, end__gt=start)
    if parents is not None:
        stored = stored.filter(schedule__fhir_id__in=parents)
    return stored.order_by().values_list(
        *_STORED_SLOT_SQL,
        "schedule__practitioner_id",
        "schedule__practitioner_role_id",
        "schedule__practitioner_role__practitioner_id",
        *(f"schedule__{name}" for name in _RULE_COLUMNS),
    )


#: Schedules a search names that one compiled statement takes (more: the ORM's).
_COMPILED_PARENTS = 8


@lru_cache(maxsize=4 * (_COMPILED_PARENTS + 1))
def _compiled(
    rows: Callable[[Organization, datetime, datetime, Sequence[str] | None], QuerySet[Any]],
    parents: int | None,
) -> CompiledStatement:
    """``rows`` for ``parents`` named schedules (None: all), compiled once per process: a
    search that is not cached runs it, and building and compiling the queryset cost
    more than PostgreSQL's answer."""

    def make(organization_id: str, start: datetime, end: datetime, *ids: str) -> list[Any]:
        organization = Organization(pk=organization_id)
        return [rows(organization, start, end, None if parents is None else list(ids))]

    return CompiledStatement(make, kinds="sdd" + "s" * (parents or 0))


def _read(
    rows: Callable[[Organization, datetime, datetime, Sequence[str] | None], QuerySet[Any]],
    organization: Organization,
    window: Period,
    parents: set[str] | None,
) -> list[tuple[Any, ...]]:
    """The rows of ``rows`` for the window, compiled when the parents are few."""
    if parents is None or len(parents) <= _COMPILED_PARENTS:
        ids = sorted(parents) if parents is not None else []
        statement = _compiled(rows, None if parents is None else len(ids))
        return statement.rows(organization.pk, window.start, window.end, *ids)
    return plain_rows(rows(organization, window.start, window.end, sorted(parents)))


def _slot_grid(
    *,
    organization: Organization,
    window: Period,
    parents: set[str] | None,
    service_category: Sequence[Token] | None,
    rows: list[tuple[Any, ...]] | None = None,
) -> _SlotGrid:
    """The lanes of the schedules' generated slots. ``rows``: :func:`_grid_rows`'s, when
    the caller read them (else read here)."""
    schedules = rows if rows is not None else _read(_grid_rows, organization, window, parents)
    window_start, window_end = ts(window.start), ts(window.end)
    lanes: list[_Lane] = []
    infos: dict[int, tuple[str, str]] = {}
    rules: dict[int, availability.Rules] = {}
    for (
        pk,
        fhir_id,
        categories,
        minutes,
        first_start,
        first_end,
        rrule,
        tzid,
        exdates,
        practitioner,
        role,
        role_practitioner,
        *rule_values,
    ) in schedules:
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
        ordered = availability.cut(windows, step, window_start, window_end)
        if not ordered:
            continue
        infos[pk] = (fhir_id, categories)
        keyed = any(value is not None for value in rule_values)
        if keyed:
            rules[pk] = rules_of(*rule_values)
        lanes.append(
            _Lane(
                pk=pk,
                fhir_id=fhir_id,
                step=step,
                starts=ordered,
                occupant=occupant_key(
                    practitioner_id=practitioner or role_practitioner,
                    role_id=role,
                    schedule_id=pk,
                ),
                rules=rules.get(pk, NO_RULES),
                keyed=keyed,
            )
        )
    return _SlotGrid(lanes=lanes, schedules=infos, rules=rules)


def _clinic_reads(
    organization: Organization, window: Period, now: datetime
) -> list[tuple[CompiledStatement, tuple[Any, ...]]]:
    """The two reads of a whole-clinic snapshot: every stored slot of the window, and what
    occupies every occupant (:func:`occupied_read`). A search of the whole clinic knows
    whose time it needs before it has read anything, so they can go in one round trip
    (with the grid's read too, when that is not cached)."""
    read = occupied_read(organization=organization, window=window, now=now)
    assert read is not None  # (None only for many occupants named)
    stored = _compiled(_stored_rows, None).with_values(organization.pk, window.start, window.end)
    return [stored, read]


def _slot_snapshot(
    *,
    organization: Organization,
    window: Period,
    parents: set[str] | None,
    grid: _SlotGrid,
    service_category: Sequence[Token] | None,
    now: datetime,
    reads: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None,
) -> _SlotSnapshot:
    """The engine's verdict on the grid's slots and the stored slots of the window.
    ``reads``: :func:`_clinic_reads`'s rows, when the caller read them with the grid."""
    occupied_rows: list[tuple[Any, ...]] | None = None
    if reads is not None:
        stored_values, occupied_rows = reads
    elif parents is None and grid.lanes:
        stored_values, occupied_rows = rows_of_each(_clinic_reads(organization, window, now))
    else:
        # A search of named schedules learns whose time to read from their stored slots.
        stored_values = _read(_stored_rows, organization, window, parents)
    width = len(_STORED_SLOT_COLUMNS)
    occupant_of_stored = [
        occupant_key(
            practitioner_id=values[width] or values[width + 2],
            role_id=values[width + 1],
            schedule_id=values[2],
        )
        for values in stored_values
    ]
    rules = dict(grid.rules)
    for values in stored_values:
        if any(value is not None for value in values[width + 3 :]):
            rules[values[2]] = rules_of(*values[width + 3 :])
    # A search of a few schedules reads only their occupants' time (all of it: bookings of
    # their other schedules too); a search of the whole clinic reads everyone's in one go.
    wanted = (
        {*(lane.occupant for lane in grid.lanes), *occupant_of_stored}
        if parents is not None
        else None
    )
    # Blocked time is stored busy-unavailable slots: a search of the whole clinic has just
    # read every one overlapping the window, so the engine's loader need not read them again.
    blocked: dict[str, list[tuple[int, int]]] | None = None
    if parents is None:
        blocked = defaultdict(list)
        for values, key in zip(stored_values, occupant_of_stored, strict=True):
            if values[4] == SlotStatus.BUSY_UNAVAILABLE:
                blocked[key].append((values[5] // 1_000_000, values[6] // 1_000_000))
    occupied = (
        occupancies(
            organization=organization,
            window=window,
            now=now,
            occupants=wanted,
            blocked=blocked,
            rows=occupied_rows,
        )
        if grid.lanes or stored_values
        else Occupancies({}, None)
    )

    stored_rows: list[tuple[int, str, int, Any]] = []
    # Generated slots a stored one replaces: same schedule and start, or the same id.
    replaced: dict[int, set[int]] = {}  # schedule pk -> starts
    twins: dict[str, set[int]] = {}  # schedule fhir id -> starts, of generated-like ids
    for values, key in zip(stored_values, occupant_of_stored, strict=True):
        columns = values[: len(_STORED_SLOT_COLUMNS)]
        _pk, fhir_id, schedule_pk, _, status, start, end, categories = columns[:8]
        start_ts = start // 1_000_000
        replaced.setdefault(schedule_pk, set()).add(start_ts)
        # Only an id ending in a UTC stamp can be a generated slot's.
        twin = recurrence.split_occurrence_id(fhir_id) if fhir_id[-1:] == "Z" else None
        if twin is not None:
            twins.setdefault(twin[0], set()).add(ts(twin[1]))
        if service_category and not token_matches(json.loads(categories or "[]"), service_category):
            continue
        if status == SlotStatus.FREE:
            verdict = occupied.get(key).status(
                start_ts,
                end // 1_000_000,
                rules.get(schedule_pk, NO_RULES),
                (schedule_pk, start_ts),
            )
            if verdict != status:
                columns = (*columns[:4], verdict, *columns[5:])
        stored_rows.append((start_ts, fhir_id, 0, columns))
    stored_rows.sort()
    # Sorted once here, so that a request only bisects at ``now`` (as for generated slots).
    stored_open: list[tuple[int, str, int, Any]] = []
    stored_clocked: list[tuple[int, str, int, Any]] = []
    stored_fixed: dict[str, list[tuple[int, str, int, Any]]] = {}
    for row in stored_rows:
        columns = row[3]
        if columns[4] != SlotStatus.FREE:
            stored_fixed.setdefault(str(columns[4]), []).append(row)
        elif rules.get(columns[2], NO_RULES).clocked:
            stored_clocked.append(row)
        else:
            stored_open.append(row)

    # The engine marks each lane's slots that are not free; it asks only the slots near
    # what occupies their occupant, so the cost is the bookings, not the week's slots.
    verdicts = []
    for lane in grid.lanes:
        gone = replaced.get(lane.pk, set()) | twins.get(lane.fhir_id, set())
        skipped = frozenset(start for start in gone if _contains(lane.starts, start))
        marked = occupied.get(lane.occupant).not_free(
            lane.starts, lane.step, lane.rules, lane.pk if lane.keyed else None
        )
        for start in skipped.intersection(marked):
            del marked[start]
        verdicts.append(
            _Verdict(
                lane=lane,
                marked=marked,
                busy=sorted(s for s, status in marked.items() if status == availability.BUSY),
                tentative=sorted(
                    s for s, status in marked.items() if status == availability.BUSY_TENTATIVE
                ),
                skipped=skipped,
                skipped_starts=sorted(skipped),
            )
        )
    return _SlotSnapshot(
        stored_open=stored_open,
        stored_open_starts=[row[0] for row in stored_open],
        stored_clocked=stored_clocked,
        stored_fixed=stored_fixed,
        verdicts=verdicts,
        schedules=grid.schedules,
        rules=rules,
        valid_until=occupied.valid_until,
    )


def _contains(starts: list[int], start: int) -> bool:
    i = bisect.bisect_left(starts, start)
    return i < len(starts) and starts[i] == start


def _index(verdicts: list[_Verdict]) -> _GeneratedIndex:
    """Every lane's rows, sorted by start then id into the index's lists."""
    open_rows: list[tuple[int, str, int, Any]] = []
    clocked_rows: list[tuple[int, str, int, Any]] = []
    tentative_rows: list[tuple[int, str, int, Any]] = []
    blocked_rows: list[tuple[int, str, int, Any]] = []
    for verdict in verdicts:
        lane = verdict.lane
        free_rows = clocked_rows if lane.rules.clocked else open_rows
        if not verdict.marked and not verdict.skipped:
            free_rows.extend(lane.rows())
            continue
        marked, skipped = verdict.marked, verdict.skipped
        for row in lane.rows():
            s = row[0]
            if s in skipped:
                continue
            status = marked.get(s)
            if status is None:
                free_rows.append(row)
            elif status == availability.BUSY:
                blocked_rows.append(row)
            else:
                tentative_rows.append(row)
    # Starts and then ids differ between rows, so tuples compare by (start, id) alone.
    for rows in (open_rows, clocked_rows, tentative_rows, blocked_rows):
        rows.sort()
    return _GeneratedIndex(
        open=open_rows,
        open_starts=[row[0] for row in open_rows],
        clocked=clocked_rows,
        tentative=tentative_rows,
        blocked=blocked_rows,
    )


def _between(values: list[int], lo: int, hi: int | None) -> int:
    """How many of the sorted ``values`` lie in ``[lo, hi)`` (``hi`` None: no end)."""
    last = len(values) if hi is None else bisect.bisect_left(values, hi)
    return max(0, last - bisect.bisect_left(values, lo))


def _lane_counts(verdict: _Verdict, lo: int, hi: int, now_ts: int) -> tuple[int, int, int]:
    """(free, busy, busy-tentative) counts of a lane's slots starting in ``[lo, hi)`` at
    ``now``, by arithmetic on the sorted starts: no slot is made."""
    lane = verdict.lane

    def unmarked(a: int, b: int | None) -> int:
        return (
            _between(lane.starts, a, b)
            - _between(verdict.skipped_starts, a, b)
            - _between(verdict.busy, a, b)
            - _between(verdict.tentative, a, b)
        )

    reach_lo, reach_hi = availability.reach(now_ts, lane.rules)
    free_lo, free_hi = max(reach_lo, lo), hi if reach_hi is None else min(reach_hi, hi)
    free = unmarked(free_lo, free_hi) if free_lo < free_hi else 0
    tentative = _between(verdict.tentative, lo, hi)
    busy = _between(verdict.busy, lo, hi) + unmarked(lo, hi) - free
    return free, busy, tentative


def _lane_rows(
    verdict: _Verdict, lo: int, hi: int, now_ts: int, wanted: set[str] | None
) -> Iterator[tuple[int, str, int, Any]]:
    """A lane's rows starting in ``[lo, hi)`` with their status at ``now``, only those of
    the ``wanted`` statuses (None: all), lazily and in order: a page reads a few."""
    lane = verdict.lane
    starts, marked, skipped = lane.starts, verdict.marked, verdict.skipped
    pk, step, parent = lane.pk, lane.step, lane.fhir_id
    free, busy = str(SlotStatus.FREE), str(SlotStatus.BUSY)
    reach_lo, reach_hi = availability.reach(now_ts, lane.rules)
    if wanted is not None and wanted == {free}:
        # Only free slots: the ones the clock's rules reach.
        lo = max(lo, reach_lo)
        hi = hi if reach_hi is None else min(hi, reach_hi)
    for index in range(bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi)):
        s = starts[index]
        if s in skipped:
            continue
        status = marked.get(s)
        if status is None:
            status = free if reach_lo <= s and (reach_hi is None or s < reach_hi) else busy
        if wanted is None or status in wanted:
            yield s, parent + occurrence_suffix(s), 1, (pk, s, s + step, status)


def _with_status(
    rows: list[tuple[int, str, int, Any]], lo: int, hi: int, status: str
) -> Iterator[tuple[int, str, int, Any]]:
    # Lazily, and only as far as a page reads: a week of slots is thousands of rows.
    for index in range(lo, hi):
        start, slot_id, kind, (schedule_pk, slot_start, slot_end) = rows[index]
        yield start, slot_id, kind, (schedule_pk, slot_start, slot_end, status)


def _stored_with_status(
    rows: list[tuple[int, str, int, Any]], lo: int, hi: int, status: str | None = None
) -> Iterator[tuple[int, str, int, Any]]:
    """Stored rows ``lo:hi``, lazily, with ``status`` (None: their own)."""
    for index in range(lo, hi):
        row = rows[index]
        if status is None or row[3][4] == status:
            yield row
        else:
            start, slot_id, kind, columns = row
            yield start, slot_id, kind, (*columns[:4], status, *columns[5:])


def _clocked_at(
    rows: list[tuple[int, str, int, Any]],
    now_ts: int,
    rules: dict[int, availability.Rules],
    wanted: str,
) -> list[tuple[int, str, int, Any]]:
    """The rows (stored or generated) free by occupancy of schedules with notice or advance
    rules that have ``wanted`` status at ``now`` (free: within reach; busy: not), with it."""
    free = str(SlotStatus.FREE)
    out = []
    for start, slot_id, kind, payload in rows:
        schedule_pk = payload[2] if kind == 0 else payload[0]
        refused = availability.rule_refusal(start, now_ts, rules[schedule_pk]) is not None
        if (wanted == free) != refused:
            if kind == 0:
                out.append((start, slot_id, kind, (*payload[:4], wanted, *payload[5:])))
            else:
                out.append((start, slot_id, kind, (*payload, wanted)))
    return out


def _whole_hours(window: Period) -> Period:
    """``window`` widened to whole UTC hours (itself when it already is)."""
    start = window.start.astimezone(UTC)
    lo = start.replace(minute=0, second=0, microsecond=0)
    end = window.end.astimezone(UTC)
    hi = end.replace(minute=0, second=0, microsecond=0)
    if hi < end:
        hi += timedelta(hours=1)
    if lo == start and hi == end:
        return window
    return Period(lo, hi)


def _row_end(row: tuple[int, str, int, Any]) -> int:
    """A snapshot row's end in epoch seconds: stored columns keep microseconds."""
    _start, _id, kind, payload = row
    return int(payload[6] // 1_000_000) if kind == 0 else int(payload[2])


def _cut_rows(
    rows: list[tuple[int, str, int, Any]], lo: int, hi: int
) -> list[tuple[int, str, int, Any]]:
    """The rows (sorted by start) overlapping ``[lo, hi)``, as the grid and the stored-slot
    query select them for a window: start before ``hi``, end after ``lo``."""
    first = bisect.bisect_left(rows, lo, key=lambda row: row[0])
    last = bisect.bisect_left(rows, hi, key=lambda row: row[0])
    # Rows starting before ``lo`` are at most the widening's hour (plus longer slots).
    return [row for row in rows[:first] if _row_end(row) > lo] + rows[first:last]


class _Streams:
    """What a search reads: the total and the sorted streams of matching rows."""

    __slots__ = ("streams", "total")

    def __init__(self) -> None:
        self.total = 0
        self.streams: list[Iterator[tuple[int, str, int, Any]]] = []

    def add(self, count: int, rows: Iterator[tuple[int, str, int, Any]]) -> None:
        self.total += count
        self.streams.append(rows)


def _stored_streams(
    snapshot: _SlotSnapshot, lo: int, hi: int, cut: bool, now_ts: int, wanted: set[str] | None
) -> _Streams:
    """The stored slots' matches at ``now`` (free ones that have started are busy, like
    generated ones), cut to ``[lo, hi)`` when the snapshot's window is wider."""

    def rows_of(rows: list[tuple[int, str, int, Any]]) -> list[tuple[int, str, int, Any]]:
        return _cut_rows(rows, lo, hi) if cut else rows

    free, busy = str(SlotStatus.FREE), str(SlotStatus.BUSY)
    out = _Streams()
    stored_open = rows_of(snapshot.stored_open)
    starts = [row[0] for row in stored_open] if cut else snapshot.stored_open_starts
    started = bisect.bisect_left(starts, now_ts)
    stored_clocked = rows_of(snapshot.stored_clocked)
    if wanted is None or free in wanted:
        out.add(
            len(stored_open) - started, _stored_with_status(stored_open, started, len(stored_open))
        )
        if stored_clocked:
            reachable = _clocked_at(stored_clocked, now_ts, snapshot.rules, free)
            out.add(len(reachable), iter(reachable))
    if wanted is None or busy in wanted:
        out.add(started, _stored_with_status(stored_open, 0, started, busy))
        if stored_clocked:
            refused = _clocked_at(stored_clocked, now_ts, snapshot.rules, busy)
            out.add(len(refused), iter(refused))
    for fixed_status, fixed in snapshot.stored_fixed.items():
        if wanted is None or fixed_status in wanted:
            rows = rows_of(fixed)
            out.add(len(rows), iter(rows))
    return out


def _indexed_streams(
    snapshot: _SlotSnapshot,
    out: _Streams,
    lo: int,
    hi: int,
    cut: bool,
    now_ts: int,
    wanted: set[str] | None,
) -> None:
    """The generated slots' matches from the snapshot's index (a snapshot asked again)."""
    index = snapshot.index()

    def rows_of(rows: list[tuple[int, str, int, Any]]) -> list[tuple[int, str, int, Any]]:
        return _cut_rows(rows, lo, hi) if cut else rows

    free, busy, tentative = (
        str(SlotStatus.FREE),
        str(SlotStatus.BUSY),
        str(SlotStatus.BUSY_TENTATIVE),
    )
    open_rows = rows_of(index.open)
    open_starts = [row[0] for row in open_rows] if cut else index.open_starts
    clocked_rows = rows_of(index.clocked)
    # Generated slots that have started are busy, never free.
    started = bisect.bisect_left(open_starts, now_ts)
    if wanted is None or free in wanted:
        out.add(len(open_rows) - started, _with_status(open_rows, started, len(open_rows), free))
        if clocked_rows:
            reachable = _clocked_at(clocked_rows, now_ts, snapshot.rules, free)
            out.add(len(reachable), iter(reachable))
    if wanted is None or tentative in wanted:
        rows = rows_of(index.tentative)
        out.add(len(rows), _with_status(rows, 0, len(rows), tentative))
    if wanted is None or busy in wanted:
        rows = rows_of(index.blocked)
        out.add(len(rows), _with_status(rows, 0, len(rows), busy))
        out.add(started, _with_status(open_rows, 0, started, busy))
        if clocked_rows:
            out_of_reach = _clocked_at(clocked_rows, now_ts, snapshot.rules, busy)
            out.add(len(out_of_reach), iter(out_of_reach))


def _lane_streams(
    snapshot: _SlotSnapshot,
    out: _Streams,
    lo: int,
    hi: int,
    now_ts: int,
    wanted: set[str] | None,
) -> None:
    """The generated slots' matches straight from the lanes (a snapshot asked once):
    counted by arithmetic, and only a page's rows made."""
    free, busy, tentative = (
        str(SlotStatus.FREE),
        str(SlotStatus.BUSY),
        str(SlotStatus.BUSY_TENTATIVE),
    )
    for verdict in snapshot.verdicts:
        # The lane's slots overlapping [lo, hi): end after lo, start before hi.
        first = lo - verdict.lane.step + 1
        n_free, n_busy, n_tentative = _lane_counts(verdict, first, hi, now_ts)
        count = (
            (n_free if wanted is None or free in wanted else 0)
            + (n_busy if wanted is None or busy in wanted else 0)
            + (n_tentative if wanted is None or tentative in wanted else 0)
        )
        if count:
            out.add(count, _lane_rows(verdict, first, hi, now_ts, wanted))


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

    Each slot's status is the engine's (:mod:`scheduling.availability`): busy when anything
    occupies its occupant (the practitioner, across all their schedules) during it,
    busy-tentative under a live hold, busy when it has started, else free. A generated slot
    with the id or start of a stored slot of the same schedule is left out (the stored one
    wins). A fixed number of queries, whatever the size of the result, and none when the
    organisation's data is unchanged since the same search was cached
    (``scheduling.db.search_cache``) and no hold has lapsed since. Ordered by start, then id.
    """
    parents: set[str] | None = None
    if schedule_ids is not None:
        _, parents = ids_and_parents(schedule_ids)
    # A search without ``start`` runs from now, so its window moves with every request and
    # would never meet a cached snapshot: the snapshot is built for the window widened to
    # whole hours, and cut to the request's own window when read.
    asked, window = window, _whole_hours(window)
    key = (
        "slot",
        window.start,
        window.end,
        frozenset(parents) if parents is not None else None,
        tuple(service_category) if service_category else None,
    )
    now_ts = ts(now)
    built: list[bool] = []
    # A whole-clinic grid that is not cached is read in one round trip with the snapshot's
    # own reads, which wait here for it.
    clinic_reads: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = []

    def build_grid() -> tuple[_SlotGrid, int]:
        rows = None
        if parents is None:
            grid_read = _compiled(_grid_rows, None).with_values(
                organization.pk, window.start, window.end
            )
            rows, stored, occupied = rows_of_each(
                [grid_read, *_clinic_reads(organization, window, now)]
            )
            clinic_reads.append((stored, occupied))
        grid = _slot_grid(
            organization=organization,
            window=window,
            parents=parents,
            service_category=service_category,
            rows=rows,
        )
        return grid, grid.weight

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
            now=now,
            reads=clinic_reads[0] if clinic_reads else None,
        )
        built.append(True)
        return snapshot, snapshot.weight

    def current(snapshot: _SlotSnapshot) -> bool:
        # A hold lapses at its instant without any row changing: from then the snapshot
        # that counted it is out of date.
        return snapshot.valid_until is None or now_ts < snapshot.valid_until

    snapshot = search_cache.slot_cache.get_or_build(organization, key, build, valid=current)
    lo, hi, cut = ts(asked.start), ts(asked.end), asked != window
    wanted = set(statuses) if statuses else None
    out = _stored_streams(snapshot, lo, hi, cut, now_ts, wanted)
    # A snapshot just built answers from its lanes, making only the page's slots; one
    # served again is worth sorting once, after which a search only bisects at now.
    if built:
        _lane_streams(snapshot, out, lo, hi, now_ts, wanted)
    else:
        _indexed_streams(snapshot, out, lo, hi, cut, now_ts, wanted)
    return SlotResults(
        organization=organization,
        total=out.total,
        streams=out.streams,
        schedules=snapshot.schedules,
        instances=snapshot.instances,
        memo=snapshot.memo,
        made=snapshot.made,
    )
