"""Slot search: stored slots plus slots generated from schedules, free or busy."""

from __future__ import annotations

import bisect
import heapq
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, overload

from django.db.models import (
    TextField,
)
from django.db.models.functions import Cast

from scheduling import availability, recurrence
from scheduling.availability import NO_RULES
from scheduling.db import search_cache
from scheduling.db.compiled_query import CompiledModelQuery
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
    occurrence_stamps,
    token_matches,
    ts,
    window_q,
)
from scheduling.selectors.occupancy import Occupancies, occupancies, rules_of


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
            # The snapshot keeps instants as microseconds and JSON as text (see
            # ``_slot_snapshot``); SQLite gives booleans as 0/1.
            for name in ("start", "end", "updated_at"):
                values[name] = _EPOCH + timedelta(microseconds=values[name])
            values["service_category"] = json.loads(values["service_category"] or "[]")
            values["overbooked"] = bool(values["overbooked"])
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


#: The schedule columns of its booking rules, in the order :func:`rules_of` takes them.
_RULE_COLUMNS = (
    "minimum_notice_minutes",
    "maximum_advance_days",
    "buffer_before_minutes",
    "buffer_after_minutes",
    "capacity",
)


@dataclass(frozen=True, slots=True)
class _SlotGrid:
    """The slots a window's schedules generate, before any booking: depends on schedules only.

    ``rows`` are ``(start_ts, id, 1, (schedule pk, start_ts, end_ts))`` sorted by start then
    id, across all schedules.
    """

    rows: list[tuple[int, str, int, Any]]
    schedules: dict[int, tuple[str, str]]  # pk -> (fhir_id, service_category as JSON)
    occupants: dict[int, str]  # pk -> occupant key (whose time the slot is)
    rules: dict[int, availability.Rules]  # pk -> booking rules (absent: none)
    #: ``rows`` split by occupant (each still sorted): a snapshot re-asks the engine only
    #: about the occupants whose time changed.
    by_occupant: dict[str, list[tuple[int, str, int, Any]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _SlotSnapshot:
    """Everything a slot search needs except ``now``: what is cached.

    Rows are ``(start_ts, id, kind, payload)`` sorted by start then id. The engine sorted the
    generated slots into ``open`` (nothing occupies their occupant: free unless they have
    started, which only the request's ``now`` decides), ``tentative`` (a live hold) and
    ``blocked``. Stored rows carry their status by the same engine (a stored free slot is
    busy when its occupant is occupied), and are sorted the same way (``stored_*``): a
    clinic imported from another system has thousands a week, which a request must not
    walk. ``valid_until``: the first live hold's expiry, when
    the snapshot must be rebuilt although no row changed.
    """

    #: Stored slots the engine found free, of schedules without a notice or advance rule:
    #: free until they start (``stored_open_starts``), busy after, like ``open``.
    stored_open: list[tuple[int, str, int, Any]]
    stored_open_starts: list[int]
    #: Stored slots free by occupancy, of schedules whose notice or advance rule the clock
    #: decides per request.
    stored_clocked: list[tuple[int, str, int, Any]]
    #: The other stored slots by their (engine's) status, which the clock does not change.
    stored_fixed: dict[str, list[tuple[int, str, int, Any]]]
    open: list[tuple[int, str, int, Any]]
    open_starts: list[int]
    #: Free by occupancy, but of schedules whose notice or advance rule the clock decides.
    clocked: list[tuple[int, str, int, Any]]
    tentative: list[tuple[int, str, int, Any]]
    blocked: list[tuple[int, str, int, Any]]
    schedules: dict[int, tuple[str, str]]  # pk -> (fhir_id, service_category as JSON)
    rules: dict[int, availability.Rules] = field(default_factory=dict)  # by schedule pk
    valid_until: int | None = None
    #: What the generated rows' verdicts were computed from, so the next snapshot of the
    #: same search (after a booking) can keep the verdicts of every occupant whose inputs
    #: are equal: the grid (identity), the stored slots that replace generated ones, and
    #: per occupant its Occupancy and its rows' verdicts (open, clocked, tentative, blocked).
    grid: _SlotGrid | None = None
    replaced: frozenset[tuple[Any, ...]] = frozenset()
    parts: dict[str, tuple[availability.Occupancy, tuple[list[Any], ...]]] = field(
        default_factory=dict
    )
    #: Schedule instances made for pages, shared by every search served from this snapshot.
    instances: dict[int, Schedule] = field(default_factory=dict)
    #: Resources the API layer mapped for pages of this snapshot (``SlotResults.memo``).
    memo: dict[Any, Any] = field(default_factory=dict)

    @property
    def weight(self) -> int:
        return (
            len(self.stored_open)
            + len(self.stored_clocked)
            + sum(len(rows) for rows in self.stored_fixed.values())
            + len(self.open)
            + len(self.clocked)
            + len(self.tentative)
            + len(self.blocked)
        )


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
            "practitioner_id",
            "practitioner_role_id",
            "practitioner_role__practitioner_id",
            *_RULE_COLUMNS,
        )
    )
    window_start, window_end = ts(window.start), ts(window.end)
    rows: list[tuple[int, str, int, Any]] = []
    infos: dict[int, tuple[str, str]] = {}
    occupants: dict[int, str] = {}
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
        occupants[pk] = occupant_key(
            practitioner_id=practitioner or role_practitioner, role_id=role, schedule_id=pk
        )
        if any(value is not None for value in rule_values):
            rules[pk] = rules_of(*rule_values)
        prefix = f"{fhir_id}-"
        rows.extend((t, prefix + _stamp(t), 1, (pk, t, t + step)) for t in ordered)
    rows.sort(key=_row_key)
    by_occupant: dict[str, list[tuple[int, str, int, Any]]] = {}
    for row in rows:
        by_occupant.setdefault(occupants[row[3][0]], []).append(row)
    return _SlotGrid(
        rows=rows, schedules=infos, occupants=occupants, rules=rules, by_occupant=by_occupant
    )


def _slot_snapshot(
    *,
    organization: Organization,
    window: Period,
    parents: set[str] | None,
    grid: _SlotGrid,
    service_category: Sequence[Token] | None,
    now: datetime,
    previous: _SlotSnapshot | None = None,
) -> _SlotSnapshot:
    """The engine's verdict on the grid's slots and the stored slots of the window.

    ``previous``: this search's snapshot before the data changed, whose verdicts are kept
    for every occupant whose inputs are unchanged (see ``_SlotSnapshot.parts``)."""
    # Stored slots are few; with ``end`` bounded below, ``slot_org_end`` keeps this from
    # reading the whole history.
    stored_qs = Slot.objects.filter(
        organization=organization, start__lt=window.end, end__gt=window.start
    ).order_by()
    if parents is not None:
        stored_qs = stored_qs.filter(schedule__fhir_id__in=parents)
    # Instants as integer microseconds and JSON as text, straight from the cursor: a clinic
    # of stored slots has thousands in a week, and parsing their datetimes and JSON cost
    # more than the rest of the build. A page converts only its own rows (``_make``).
    stored_values = plain_rows(
        stored_qs.values_list(
            *_STORED_SLOT_SQL,
            "schedule__practitioner_id",
            "schedule__practitioner_role_id",
            "schedule__practitioner_role__practitioner_id",
            *(f"schedule__{name}" for name in _RULE_COLUMNS),
        )
    )
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
    wanted = {*grid.occupants.values(), *occupant_of_stored} if parents is not None else None
    occupied = (
        occupancies(organization=organization, window=window, now=now, occupants=wanted)
        if grid.rows or stored_values
        else Occupancies({}, None)
    )

    stored_rows: list[tuple[int, str, int, Any]] = []
    # Generated slots a stored one replaces: same schedule and start, or the same id.
    replaced: set[tuple[int, int]] = set()
    twins: set[tuple[str, int]] = set()  # (schedule fhir id, start) of generated-like ids
    for values, key in zip(stored_values, occupant_of_stored, strict=True):
        columns = values[: len(_STORED_SLOT_COLUMNS)]
        _pk, fhir_id, schedule_pk, _, status, start, end, categories = columns[:8]
        start_ts = start // 1_000_000
        replaced.add((schedule_pk, start_ts))
        # Only an id ending in a UTC stamp can be a generated slot's.
        twin = recurrence.split_occurrence_id(fhir_id) if fhir_id[-1:] == "Z" else None
        if twin is not None:
            twins.add((twin[0], ts(twin[1])))
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
    stored_rows.sort(key=_row_key)
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

    # Per occupant, in the order of its slots' starts (from all its schedules), one sweep:
    # its rows' verdicts depend on its Occupancy, its schedules' rules (the grid) and the
    # stored slots that replace generated ones, nothing else. When all of these equal the
    # previous snapshot's, its verdicts are the engine's answer again and are kept: a
    # booking re-sweeps the one occupant it changed, not the clinic's week.
    replaced_key = frozenset(replaced) | frozenset(("twin", *twin) for twin in twins)
    reusable = previous is not None and previous.grid is grid and previous.replaced == replaced_key
    parts: dict[str, tuple[availability.Occupancy, tuple[list[Any], ...]]] = {}
    for key, occupant_rows in grid.by_occupant.items():
        occupancy = occupied.get(key)
        if reusable:
            assert previous is not None
            kept = previous.parts.get(key)
            if kept is not None and kept[0] == occupancy:
                parts[key] = kept
                continue
        parts[key] = (
            occupancy,
            _verdicts(occupant_rows, occupancy, rules, grid, replaced, twins),
        )
    open_rows = _merged(part[1][0] for part in parts.values())
    clocked_rows = _merged(part[1][1] for part in parts.values())
    tentative_rows = _merged(part[1][2] for part in parts.values())
    blocked_rows = _merged(part[1][3] for part in parts.values())
    return _SlotSnapshot(
        stored_open=stored_open,
        stored_open_starts=[row[0] for row in stored_open],
        stored_clocked=stored_clocked,
        stored_fixed=stored_fixed,
        open=open_rows,
        open_starts=[row[0] for row in open_rows],
        clocked=clocked_rows,
        tentative=tentative_rows,
        blocked=blocked_rows,
        schedules=grid.schedules,
        rules=rules,
        valid_until=occupied.valid_until,
        grid=grid,
        replaced=replaced_key,
        parts=parts,
    )


def _verdicts(
    rows: list[tuple[int, str, int, Any]],
    occupancy: availability.Occupancy,
    rules: dict[int, availability.Rules],
    grid: _SlotGrid,
    replaced: set[tuple[int, int]],
    twins: set[tuple[str, int]],
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The engine's verdict on one occupant's generated rows (sorted by start), in one
    sweep: (open, clocked, tentative, blocked) rows, each still sorted."""
    open_rows: list[tuple[int, str, int, Any]] = []
    clocked_rows: list[tuple[int, str, int, Any]] = []
    tentative_rows: list[tuple[int, str, int, Any]] = []
    blocked_rows: list[tuple[int, str, int, Any]] = []
    sorted_into = {
        availability.FREE: open_rows,
        availability.BUSY_TENTATIVE: tentative_rows,
        availability.BUSY: blocked_rows,
    }
    sweep = occupancy.sweep()
    for row in rows:
        slot_start, _, _, (pk, _, slot_end) = row
        if replaced and (
            (pk, slot_start) in replaced or (grid.schedules[pk][0], slot_start) in twins
        ):
            continue
        slot_rules = rules.get(pk)
        if slot_rules is None:
            sorted_into[sweep(slot_start, slot_end)].append(row)
            continue
        status = sweep(slot_start, slot_end, slot_rules, (pk, slot_start))
        if status == availability.FREE and slot_rules.clocked:
            clocked_rows.append(row)
        else:
            sorted_into[status].append(row)
    return open_rows, clocked_rows, tentative_rows, blocked_rows


def _merged(parts: Iterator[list[tuple[int, str, int, Any]]]) -> list[tuple[int, str, int, Any]]:
    # Each part is sorted: Timsort merges the runs in about one pass.
    rows = [row for part in parts for row in part]
    rows.sort(key=_row_key)
    return rows


def _row_key(row: tuple[int, str, int, Any]) -> tuple[int, str]:
    return row[0], row[1]


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


def _stored_clocked_at(
    rows: list[tuple[int, str, int, Any]],
    now_ts: int,
    rules: dict[int, availability.Rules],
    wanted: str,
) -> list[tuple[int, str, int, Any]]:
    """The stored slots free by occupancy of schedules with notice or advance rules that
    have ``wanted`` status at ``now`` (free: within reach of the rules; busy: not)."""
    free = str(SlotStatus.FREE)
    out = []
    for start, slot_id, kind, columns in rows:
        refused = availability.rule_refusal(start, now_ts, rules[columns[2]]) is not None
        if (wanted == free) != refused:
            out.append((start, slot_id, kind, (*columns[:4], wanted, *columns[5:])))
    return out


def _clocked_at(
    rows: list[tuple[int, str, int, Any]],
    now_ts: int,
    rules: dict[int, availability.Rules],
    wanted: str,
) -> list[tuple[int, str, int, Any]]:
    """The generated slots of schedules with notice or advance rules that have ``wanted``
    status at ``now`` (free: within reach; busy: not), with that status."""
    free = str(SlotStatus.FREE)
    out = []
    for start, slot_id, kind, (schedule_pk, slot_start, slot_end) in rows:
        refused = availability.rule_refusal(start, now_ts, rules[schedule_pk]) is not None
        if (wanted == free) != refused:
            out.append((start, slot_id, kind, (schedule_pk, slot_start, slot_end, wanted)))
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


def _cut_to(snapshot: _SlotSnapshot, lo: int, hi: int) -> _SlotSnapshot:
    """The snapshot of a widened window, as the snapshot of ``[lo, hi)`` inside it would
    be: the same verdicts (a slot's depends only on what overlaps it), fewer rows."""
    stored_open = _cut_rows(snapshot.stored_open, lo, hi)
    open_rows = _cut_rows(snapshot.open, lo, hi)
    return _SlotSnapshot(
        stored_open=stored_open,
        stored_open_starts=[row[0] for row in stored_open],
        stored_clocked=_cut_rows(snapshot.stored_clocked, lo, hi),
        stored_fixed={
            status: _cut_rows(rows, lo, hi) for status, rows in snapshot.stored_fixed.items()
        },
        open=open_rows,
        open_starts=[row[0] for row in open_rows],
        clocked=_cut_rows(snapshot.clocked, lo, hi),
        tentative=_cut_rows(snapshot.tentative, lo, hi),
        blocked=_cut_rows(snapshot.blocked, lo, hi),
        schedules=snapshot.schedules,
        rules=snapshot.rules,
        valid_until=snapshot.valid_until,
        instances=snapshot.instances,
        memo=snapshot.memo,
    )


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
    # whole hours, and cut to the request's own window when read (:func:`_cut_to`).
    asked, window = window, _whole_hours(window)
    key = (
        "slot",
        window.start,
        window.end,
        frozenset(parents) if parents is not None else None,
        tuple(service_category) if service_category else None,
    )
    now_ts = ts(now)

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
            now=now,
            previous=search_cache.slot_cache.latest(organization, key),
        )
        return snapshot, snapshot.weight

    def current(snapshot: _SlotSnapshot) -> bool:
        # A hold lapses at its instant without any row changing: from then the snapshot
        # that counted it is out of date.
        return snapshot.valid_until is None or now_ts < snapshot.valid_until

    snapshot = search_cache.slot_cache.get_or_build(organization, key, build, valid=current)
    if asked != window:
        snapshot = _cut_to(snapshot, ts(asked.start), ts(asked.end))

    wanted_status = set(statuses) if statuses else None
    free, busy_status = str(SlotStatus.FREE), str(SlotStatus.BUSY)
    tentative_status = str(SlotStatus.BUSY_TENTATIVE)
    total = 0
    streams: list[Iterator[tuple[int, str, int, Any]]] = []
    # Stored slots: free ones that have started are busy, like generated ones.
    stored_started = bisect.bisect_left(snapshot.stored_open_starts, now_ts)
    stored_open = snapshot.stored_open
    if wanted_status is None or free in wanted_status:
        total += len(stored_open) - stored_started
        streams.append(_stored_with_status(stored_open, stored_started, len(stored_open)))
        if snapshot.stored_clocked:
            reachable = _stored_clocked_at(snapshot.stored_clocked, now_ts, snapshot.rules, free)
            total += len(reachable)
            streams.append(iter(reachable))
    if wanted_status is None or busy_status in wanted_status:
        total += stored_started
        streams.append(_stored_with_status(stored_open, 0, stored_started, busy_status))
        if snapshot.stored_clocked:
            refused = _stored_clocked_at(
                snapshot.stored_clocked, now_ts, snapshot.rules, busy_status
            )
            total += len(refused)
            streams.append(iter(refused))
    for fixed_status, rows in snapshot.stored_fixed.items():
        if wanted_status is None or fixed_status in wanted_status:
            total += len(rows)
            streams.append(iter(rows))
    # Generated slots that have started are busy, never free.
    started = bisect.bisect_left(snapshot.open_starts, now_ts)
    if wanted_status is None or free in wanted_status:
        total += len(snapshot.open) - started
        streams.append(_with_status(snapshot.open, started, len(snapshot.open), free))
        if snapshot.clocked:
            reachable = _clocked_at(snapshot.clocked, now_ts, snapshot.rules, free)
            total += len(reachable)
            streams.append(iter(reachable))
    if wanted_status is None or tentative_status in wanted_status:
        total += len(snapshot.tentative)
        streams.append(
            _with_status(snapshot.tentative, 0, len(snapshot.tentative), tentative_status)
        )
    if wanted_status is None or busy_status in wanted_status:
        total += len(snapshot.blocked) + started
        streams.append(_with_status(snapshot.blocked, 0, len(snapshot.blocked), busy_status))
        streams.append(_with_status(snapshot.open, 0, started, busy_status))
        if snapshot.clocked:
            out_of_reach = _clocked_at(snapshot.clocked, now_ts, snapshot.rules, busy_status)
            total += len(out_of_reach)
            streams.append(iter(out_of_reach))
    return SlotResults(
        organization=organization,
        total=total,
        streams=streams,
        schedules=snapshot.schedules,
        instances=snapshot.instances,
        memo=snapshot.memo,
    )
