"""Reads of the scheduling domain (HackSoft style: keyword-only, ``organization`` required).

No HTTP and no FHIR JSON here: selectors return model instances and periods; the API maps
them. Every search runs a fixed number of queries, independent of the number of results
(recurrences and slots are expanded in Python from the rows of those few queries).
"""

from __future__ import annotations

import bisect
import heapq
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, overload

from django.db import connections
from django.db.models import (
    BigIntegerField,
    Case,
    F,
    Func,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast

from scheduling import recurrence, search_cache
from scheduling.compiled_query import CompiledQuery, EpochSeconds
from scheduling.errors import NotFound, WindowTooLarge
from scheduling.models import (
    INACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    DataStamp,
    Organization,
    Patient,
    Schedule,
    Slot,
    SlotStatus,
)
from scheduling.recurrence import Period

_DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: (system, code): system None matches any system, "" matches codings without a system.
Token = tuple[str | None, str]


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    """A stored schedule (``period`` None) or one generated occurrence of a recurring one."""

    schedule: Schedule
    period: Period | None = None

    @property
    def id(self) -> str:
        if self.period is None:
            return self.schedule.fhir_id
        return recurrence.occurrence_id(self.schedule.fhir_id, self.period.start)

    @property
    def start(self) -> datetime:
        return self.period.start if self.period else self.schedule.planning_start


@dataclass(frozen=True, slots=True)
class AppointmentResult:
    appointment: Appointment
    period: Period | None = None

    @property
    def id(self) -> str:
        if self.period is None:
            return self.appointment.fhir_id
        return recurrence.occurrence_id(self.appointment.fhir_id, self.period.start)

    @property
    def start(self) -> datetime:
        return self.period.start if self.period else self.appointment.start


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


def token_matches(concepts: object, tokens: Sequence[Token]) -> bool:
    """True if any stored coding ({system, code, display}) matches any token (OR)."""
    if not isinstance(concepts, list):
        return False
    for item in concepts:
        if not isinstance(item, dict):
            continue
        for system, code in tokens:
            if item.get("code") != code:
                continue
            if system is None or (item.get("system") or "") == system:
                return True
    return False


def _overlaps(start: datetime, end: datetime, window: Period) -> bool:
    return start < window.end and end > window.start


def _expand(
    obj: Schedule | Appointment,
    organization: Organization,
    start: datetime,
    end: datetime,
    first: tuple[datetime, datetime],
    window: Period,
) -> list[Period]:
    return recurrence.expand(
        rrule=obj.rrule,
        first_start=first[0],
        first_end=first[1],
        tzid=obj.rule_timezone(organization),
        exdates=obj.exdate_values(),
        window_start=window.start,
        window_end=window.end,
    )


def schedule_availability(
    *, schedule: Schedule, organization: Organization, window_start: datetime, window_end: datetime
) -> list[Period]:
    """The schedule's availability windows overlapping [window_start, window_end).

    Its own period, or every occurrence of a recurring one. No database access.
    """
    window = Period(window_start, window_end)
    first = (schedule.planning_start, schedule.planning_end)
    if schedule.rrule:
        return _expand(schedule, organization, window_start, window_end, first, window)
    if _overlaps(first[0], first[1], window):
        return [Period(first[0], first[1])]
    return []


def _ids_and_parents(ids: Iterable[str]) -> tuple[set[str], set[str]]:
    wanted = set(ids)
    lookup = set(wanted)
    for value in wanted:
        split = recurrence.split_occurrence_id(value)
        if split is not None:
            lookup.add(split[0])
    return wanted, lookup


def _schedules(organization: Organization) -> QuerySet[Schedule]:
    return Schedule.objects.filter(organization=organization).select_related(
        "practitioner_role__practitioner", "practitioner"
    )


def _window_q(window: Period, start_field: str, end_field: str) -> Q:
    """Rows overlapping the window, plus recurring rows that start before it ends."""
    plain = Q(rrule="", **{f"{start_field}__lt": window.end, f"{end_field}__gt": window.start})
    recurring = ~Q(rrule="") & Q(**{f"{start_field}__lt": window.end})
    return plain | recurring


def schedule_search(
    *,
    organization: Organization,
    ids: Sequence[str] | None = None,
    actor: str | None = None,
    active: bool | None = None,
    service_category: Sequence[Token] | None = None,
    window: Period | None = None,
) -> list[ScheduleResult]:
    """Schedules of ``organization``; with a window, recurring ones become their occurrences.

    ``ids`` (OR) may name stored schedules or, with a window, generated occurrences.
    ``actor`` is ``PractitionerRole/x``, ``Practitioner/x`` or a bare id (either kind).
    Ordered by start, then id.
    """
    key = (
        "schedule",
        tuple(ids) if ids is not None else None,
        actor,
        active,
        tuple(service_category) if service_category else None,
        (window.start, window.end) if window is not None else None,
    )

    def build() -> tuple[list[ScheduleResult], int]:
        results = _schedule_search(
            organization=organization,
            ids=ids,
            actor=actor,
            active=active,
            service_category=service_category,
            window=window,
        )
        return results, len(results)

    # The cached list and its schedules are shared: the mappers only read them. Schedule
    # resources do not depend on bookings, so bookings do not discard the entry.
    return search_cache.schedule_cache.get_or_build(organization, key, build, bookings=False)


def _schedule_search(
    *,
    organization: Organization,
    ids: Sequence[str] | None,
    actor: str | None,
    active: bool | None,
    service_category: Sequence[Token] | None,
    window: Period | None,
) -> list[ScheduleResult]:
    qs = _schedules(organization)
    wanted: set[str] = set()
    if ids is not None:
        wanted, lookup = _ids_and_parents(ids)
        qs = qs.filter(fhir_id__in=lookup if window is not None else wanted)
    if actor is not None:
        kind, _, ref_id = actor.rpartition("/")
        role_q = Q(practitioner_role__fhir_id=ref_id)
        prac_q = Q(practitioner__fhir_id=ref_id) | Q(
            practitioner_role__practitioner__fhir_id=ref_id
        )
        qs = qs.filter(
            role_q
            if kind == "PractitionerRole"
            else prac_q
            if kind == "Practitioner"
            else role_q | prac_q
        )
    if active is not None:
        qs = qs.filter(active=active)
    if window is not None:
        qs = qs.filter(_window_q(window, "planning_start", "planning_end"))
    results: list[ScheduleResult] = []
    for schedule in qs:
        schedule.organization = organization  # avoid a query per row in the mappers
        if service_category and not token_matches(schedule.service_category, service_category):
            continue
        if window is None or not schedule.rrule:
            if ids is None or schedule.fhir_id in wanted:
                results.append(ScheduleResult(schedule))
            continue
        for period in schedule_availability(
            schedule=schedule,
            organization=organization,
            window_start=window.start,
            window_end=window.end,
        ):
            result = ScheduleResult(schedule, period)
            if ids is None or schedule.fhir_id in wanted or result.id in wanted:
                results.append(result)
    results.sort(key=lambda r: (r.start, r.id))
    return results


def organization_columns(organization_id: Any) -> list[Subquery]:
    """(id, name, time zone, schedules stamp, bookings stamp) of one organisation as scalar
    subqueries, all None when it does not exist: to ride along in another query (the
    request's token lookup) and save a round trip. See :func:`organization_from_row`.
    """
    organization = Organization.objects.filter(pk=organization_id)
    stamps = DataStamp.objects.filter(organization_id=organization_id)
    return [
        *(Subquery(organization.values(name)[:1]) for name in ("id", "name", "timezone")),
        *(Subquery(stamps.values(name)[:1]) for name in ("schedules", "bookings")),
    ]


def organization_from_row(row: Sequence[Any]) -> Organization | None:
    """The organisation of :func:`organization_columns`' values, with its data stamps.

    The id, name and time zone are loaded; other fields load on first access.
    """
    pk, name, tz, schedules_stamp, bookings_stamp = row
    if pk is None:
        return None
    organization = Organization.from_db("default", ["id", "name", "timezone"], [pk, name, tz])
    schedules_name, bookings_name = search_cache.STAMP_ATTRIBUTES
    setattr(organization, schedules_name, schedules_stamp)
    setattr(organization, bookings_name, bookings_stamp)
    return organization


_ORGANIZATION = CompiledQuery(
    lambda organization_id: (
        Organization.objects.filter(pk=organization_id)
        .order_by()
        .values_list(*organization_columns(organization_id))
    )
)


def organization_get(*, organization_id: str) -> Organization | None:
    """The organisation with its data stamps (``search_cache``), in one query.

    Every API request needs it, so the SQL is compiled once per process.
    """
    rows = _ORGANIZATION.rows(organization_id)
    return organization_from_row(rows[0]) if rows else None


def _generated_not_found(kind: str, fhir_id: str, parent_exists: bool, parent: str) -> NotFound:
    if parent_exists:
        parent_type = "Appointment" if kind == "Appointment" else "Schedule"
        return NotFound(
            f"{kind} '{fhir_id}' is a generated occurrence of {parent_type}/{parent}; "
            "generated occurrences cannot be read by id, only found by a search with a "
            "date window."
        )
    return NotFound(f"{kind} '{fhir_id}' was not found.")


def schedule_get(*, organization: Organization, fhir_id: str) -> Schedule:
    """A stored schedule; NotFound (naming the parent) for a generated occurrence id."""
    schedule = _schedules(organization).filter(fhir_id=fhir_id).first()
    if schedule is not None:
        schedule.organization = organization
        return schedule
    split = recurrence.split_occurrence_id(fhir_id)
    parent_exists = (
        split is not None
        and Schedule.objects.filter(organization=organization, fhir_id=split[0])
        .exclude(rrule="")
        .exists()
    )
    raise _generated_not_found("Schedule", fhir_id, parent_exists, split[0] if split else "")


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
    raise _generated_not_found("Slot", fhir_id, parent_exists, split[0] if split else "")


def _appointments(organization: Organization, patient: Patient) -> QuerySet[Appointment]:
    return Appointment.objects.filter(organization=organization, patient=patient).select_related(
        "slot", "practitioner_role"
    )


def _bind(appointment: Appointment, organization: Organization, patient: Patient) -> Appointment:
    # Both are already loaded by the tenancy layer: no join and no query per row.
    appointment.organization = organization
    appointment.patient = patient
    return appointment


def appointment_get(*, organization: Organization, patient: Patient, fhir_id: str) -> Appointment:
    """A stored appointment of this patient; NotFound otherwise (also for occurrences)."""
    appointment = _appointments(organization, patient).filter(fhir_id=fhir_id).first()
    if appointment is not None:
        return _bind(appointment, organization, patient)
    split = recurrence.split_occurrence_id(fhir_id)
    parent_exists = (
        split is not None
        and _appointments(organization, patient).filter(fhir_id=split[0]).exclude(rrule="").exists()
    )
    raise _generated_not_found("Appointment", fhir_id, parent_exists, split[0] if split else "")


def patient_appointment_search(
    *,
    organization: Organization,
    patient: Patient,
    ids: Sequence[str] | None = None,
    window: Period | None = None,
    statuses: Sequence[str] | None = None,
) -> list[AppointmentResult]:
    """The patient's appointments; with a window, recurring ones become their occurrences."""
    qs = _appointments(organization, patient)
    wanted: set[str] = set()
    if ids is not None:
        wanted, lookup = _ids_and_parents(ids)
        qs = qs.filter(fhir_id__in=lookup if window is not None else wanted)
    if statuses:
        qs = qs.filter(status__in=list(statuses))
    if window is not None:
        qs = qs.filter(_window_q(window, "start", "end"))
    results: list[AppointmentResult] = []
    for appointment in qs:
        _bind(appointment, organization, patient)
        if window is None or not appointment.rrule:
            if ids is None or appointment.fhir_id in wanted:
                results.append(AppointmentResult(appointment))
            continue
        for period in _expand(
            appointment,
            organization,
            window.start,
            window.end,
            (appointment.start, appointment.end),
            window,
        ):
            result = AppointmentResult(appointment, period)
            if ids is None or appointment.fhir_id in wanted or result.id in wanted:
                results.append(result)
    results.sort(key=lambda r: (r.start, r.id))
    return results


def _day_floor(ts: int) -> int:
    return ts - ts % _DAY


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _expand_stamps(
    rrule: str,
    first_start: int,
    first_end: int,
    tzid: str,
    exdates: str,
    window_start: datetime,
    window_end: datetime,
) -> tuple[tuple[int, int], ...]:
    periods = recurrence.expand(
        rrule=rrule,
        first_start=_from_micros(first_start),
        first_end=_from_micros(first_end),
        tzid=tzid,
        exdates=[datetime.fromisoformat(value) for value in json.loads(exdates or "[]")],
        window_start=window_start,
        window_end=window_end,
    )
    return tuple((int(p.start.timestamp()), int(p.end.timestamp())) for p in periods)


@lru_cache(maxsize=4096)
def _cached_expansion(
    rrule: str,
    first_start: int,
    first_end: int,
    tzid: str,
    exdates: str,
    day_start: int,
    day_end: int,
) -> tuple[tuple[int, int], ...]:
    """Occurrences as integer UTC timestamps over whole UTC days [day_start, day_end).

    A pure function of its arguments: every input of the rule is part of the key (the
    first period in microseconds, the exdates as stored JSON text), so the cache stays
    correct however many workers there are and whenever a row changes (a changed row is
    simply a new key). Whole days let the searches of one day share entries.
    """
    return _expand_stamps(
        rrule,
        first_start,
        first_end,
        tzid,
        exdates,
        datetime.fromtimestamp(day_start, UTC),
        datetime.fromtimestamp(day_end, UTC),
    )


def _occurrence_stamps(
    *,
    rrule: str,
    first_start: int,
    first_end: int,
    tzid: str,
    exdates: str,
    window: Period,
    window_start: int,
    window_end: int,
) -> list[tuple[int, int]]:
    """Occurrences overlapping ``window`` as integer timestamps (through the cache).

    ``first_start``/``first_end`` are microseconds since 1970, ``exdates`` the stored JSON.
    """
    try:
        days = _cached_expansion(
            rrule,
            first_start,
            first_end,
            tzid,
            exdates,
            _day_floor(window_start),
            _day_floor(window_end - 1) + _DAY,
        )
    except WindowTooLarge:
        # The whole days may hold a few more occurrences than the window itself: only the
        # window decides whether a search is too costly.
        days = _expand_stamps(
            rrule, first_start, first_end, tzid, exdates, window.start, window.end
        )
    return [(s, e) for s, e in days if s < window_end and e > window_start]


class _EpochMicros(Func):
    """Exact microseconds since 1970 (UTC): a cheap integer that keeps the fraction."""

    output_field = BigIntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint",
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC; the fraction is characters
        # 21-26 (padded when the stored value has none).
        return self.as_sql(
            compiler,
            connection,
            template=(
                "(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) * 1000000"
                " + CAST(substr(%(expressions)s || '.000000', 21, 6) AS INTEGER))"
            ),
        )


def _plain_rows(queryset: QuerySet[Any]) -> list[tuple[Any, ...]]:
    """The rows of a ``values_list`` of integer and text columns, straight from the cursor.

    Django's per-row converter pass costs more than the rest of the loop over a thousand
    busy rows; integers and text need no conversion on either backend.
    """
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows


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
        appointments.filter(_window_q(window, "start", "end"))
        .exclude(status__in=list(INACTIVE_APPOINTMENT_STATUSES))
        .order_by()
        .values_list(
            "schedule_id",
            EpochSeconds("start"),
            EpochSeconds("end"),
            "rrule",
            # The rule's own columns only for the few recurring rows: NULL is free to load.
            Case(When(plain, then=None), default=_EpochMicros("start")),
            Case(When(plain, then=None), default=_EpochMicros("end")),
            Case(When(plain, then=Value("")), default=F("recurrence_timezone")),
            Case(When(plain, then=None), default=Cast("exdates", TextField())),
        )
    )
    window_start, window_end = _ts(window.start), _ts(window.end)
    wanted = set(schedule_pks)
    for schedule_pk, start_ts, end_ts, rrule, start_us, end_us, tzid, exdates in _plain_rows(rows):
        if schedule_pk not in wanted:
            continue
        if not rrule:
            busy[schedule_pk].append((start_ts, end_ts))
            continue
        busy[schedule_pk].extend(
            _occurrence_stamps(
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


def _ts(value: datetime) -> int:
    return int(value.timestamp())


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
    ).filter(_window_q(window, "planning_start", "planning_end"))
    if parents is not None:
        schedules_qs = schedules_qs.filter(fhir_id__in=parents)
    # Integers and JSON text, decoded only where needed: two hundred schedules are read
    # by every search, and their datetimes and JSON cost more than the rest of the work.
    schedules = _plain_rows(
        schedules_qs.order_by().values_list(
            "pk",
            "fhir_id",
            Cast("service_category", TextField()),
            "slot_minutes",
            _EpochMicros("planning_start"),
            _EpochMicros("planning_end"),
            "rrule",
            "recurrence_timezone",
            Cast("exdates", TextField()),
        )
    )
    window_start, window_end = _ts(window.start), _ts(window.end)
    rows: list[tuple[int, str, int, Any]] = []
    infos: dict[int, tuple[str, str]] = {}
    for pk, fhir_id, categories, minutes, first_start, first_end, rrule, tzid, exdates in schedules:
        if service_category and not token_matches(json.loads(categories or "[]"), service_category):
            continue
        if rrule:
            windows = _occurrence_stamps(
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
        start_ts = _ts(start)
        replaced.add((schedule_pk, start_ts))
        twin = recurrence.split_occurrence_id(fhir_id)
        if twin is not None:
            twins.add((twin[0], _ts(twin[1])))
        if status == SlotStatus.BUSY_UNAVAILABLE:
            busy[schedule_pk].append((start_ts, _ts(end)))
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
    (``scheduling.search_cache``). Ordered by start, then id.
    """
    parents: set[str] | None = None
    if schedule_ids is not None:
        _, parents = _ids_and_parents(schedule_ids)
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
    started = bisect.bisect_left(snapshot.open_starts, _ts(now))
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


def utc_now() -> datetime:
    return datetime.now(UTC)
