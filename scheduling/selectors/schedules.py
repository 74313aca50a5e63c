"""Reads of schedules: search (recurring ones expanded in a window) and read by id."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import (
    Q,
    QuerySet,
    TextField,
)
from django.db.models.functions import Cast

from scheduling import recurrence
from scheduling.db import search_cache
from scheduling.db.compiled_query import CompiledModelQuery, CompiledStatement
from scheduling.db.epoch import EpochMicros
from scheduling.models import (
    Organization,
    Schedule,
)
from scheduling.recurrence import Period
from scheduling.selectors.common import (
    Token,
    expand_rule,
    generated_not_found,
    ids_and_parents,
    occurrence_stamps,
    occurrence_suffix,
    overlaps,
    token_matches,
    window_q,
)
from scheduling.selectors.references import schedules_by_pk

#: The schedule's row and each row its resource shows (role, the role's practitioner, the
#: practitioner), as (key, version), None where there is none: a changed row has a new
#: version (scheduling.db.version_triggers), so a new value.
Versions = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """What a Schedule search result knows of its schedule without loading it.

    ``schedule`` is the loaded instance, or None where the search read integers and text
    only (``instances=False``): the caller loads what it must map (``schedules_by_pk``)."""

    pk: int
    fhir_id: str
    practitioner_role_id: int | None
    practitioner_id: int | None
    versions: Versions
    schedule: Schedule | None = None


class ScheduleResult(NamedTuple):
    """A stored schedule (``period`` None) or one generated occurrence of a recurring one.

    ``order`` is the start in microseconds since 1970: results are ordered by it, then id."""

    order: int
    id: str
    row: ScheduleRow
    period: Period | None

    @property
    def start(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.order)


class ScheduleResults(list[ScheduleResult]):
    """A Schedule search's results, and ``memo``: what the API layer made of them, kept
    with the (cached) list so the searches it serves map each result once. The results
    and the memo's values are shared: neither may be changed."""

    __slots__ = ("memo",)

    def __init__(self, results: Sequence[ScheduleResult] = ()) -> None:
        super().__init__(results)
        self.memo: dict[Any, Any] = {}


def schedule_availability(
    *, schedule: Schedule, organization: Organization, window_start: datetime, window_end: datetime
) -> list[Period]:
    """The schedule's availability windows overlapping [window_start, window_end).

    Its own period, or every occurrence of a recurring one. No database access.
    """
    window = Period(window_start, window_end)
    first = (schedule.planning_start, schedule.planning_end)
    if schedule.rrule:
        return expand_rule(schedule, organization, window_start, window_end, first, window)
    if overlaps(first[0], first[1], window):
        return [Period(first[0], first[1])]
    return []


def _schedules(organization: Organization) -> QuerySet[Schedule]:
    return Schedule.objects.filter(organization=organization).select_related(
        "practitioner_role__practitioner", "practitioner"
    )


def schedule_search(
    *,
    organization: Organization,
    ids: Sequence[str] | None = None,
    actor: str | None = None,
    active: bool | None = None,
    service_category: Sequence[Token] | None = None,
    window: Period | None = None,
    instances: bool = True,
) -> ScheduleResults:
    """Schedules of ``organization``; with a window, recurring ones become their occurrences.

    ``ids`` (OR) may name stored schedules or, with a window, generated occurrences.
    ``actor`` is ``PractitionerRole/x``, ``Practitioner/x`` or a bare id (either kind).
    Ordered by start, then id. ``instances=False``: the common search (a window, no ids,
    actor or active) reads integers and text only, and its results may carry no schedule
    instance (``ScheduleRow.schedule``); for a caller that maps most results from what it
    kept by ``ScheduleRow.versions``.
    """
    integers = not instances and ids is None and actor is None and active is None
    key = (
        "schedule",
        tuple(ids) if ids is not None else None,
        actor,
        active,
        tuple(service_category) if service_category else None,
        (window.start, window.end) if window is not None else None,
        # Results without instances must not answer a caller that needs them.
        integers and window is not None,
    )

    def build() -> tuple[ScheduleResults, int]:
        results = None
        if integers and window is not None:
            results = _integer_search(
                organization=organization, service_category=service_category, window=window
            )
        if results is None:
            results = _schedule_search(
                organization=organization,
                ids=ids,
                actor=actor,
                active=active,
                service_category=service_category,
                window=window,
            )
        return ScheduleResults(results), len(results)

    # The cached list and its schedules are shared: the mappers only read them. Schedule
    # resources do not depend on bookings, so bookings do not discard the entry.
    return search_cache.schedule_cache.get_or_build(organization, key, build, bookings=False)


_START = itemgetter(0)
_ID = itemgetter(1)


def _sort(results: list[ScheduleResult]) -> None:
    """Order ``results`` by (start, id) in place: two stable sorts, by id and then by
    start, give the same order as one by the pair, in about a third of the time (keys of
    one type take CPython's specialised comparisons; key pairs compare as tuples)."""
    results.sort(key=_ID)
    results.sort(key=_START)


#: (organisation id, window start, window end, ""): the Schedule search's one query in its
#: common form (a date window, no other filter), compiled once per process.
_SCHEDULES_IN_WINDOW = CompiledModelQuery(
    lambda organization_id, start, end, blank: (
        Schedule.objects.filter(organization_id=organization_id)
        .filter(window_q(Period(start, end), "planning_start", "planning_end", blank))
        .select_related("practitioner_role__practitioner", "practitioner")
        .order_by()  # sorted by start and id below
    ),
    kinds="sdds",
)


def _schedule_search(
    *,
    organization: Organization,
    ids: Sequence[str] | None,
    actor: str | None,
    active: bool | None,
    service_category: Sequence[Token] | None,
    window: Period | None,
) -> list[ScheduleResult]:
    if ids is None and actor is None and active is None and window is not None:
        rows: Iterable[Schedule] = _SCHEDULES_IN_WINDOW.all(
            organization.pk, window.start, window.end, ""
        )
    else:
        rows = _filtered(organization, ids=ids, actor=actor, active=active, window=window)
    wanted: set[str] = set(ids) if ids is not None else set()
    results: list[ScheduleResult] = []
    for schedule in rows:
        schedule.organization = organization  # avoid a query per row in the mappers
        if service_category and not token_matches(schedule.service_category, service_category):
            continue
        row = ScheduleRow(
            schedule.pk,
            schedule.fhir_id,
            schedule.practitioner_role_id,
            schedule.practitioner_id,
            _versions(schedule),
            schedule,
        )
        if window is None or not schedule.rrule:
            if ids is None or schedule.fhir_id in wanted:
                start = (schedule.planning_start - _EPOCH) // _MICROSECOND
                results.append(ScheduleResult(start, schedule.fhir_id, row, None))
            continue
        for period in _occurrences(schedule, organization, window):
            occurrence = recurrence.occurrence_id(schedule.fhir_id, period.start)
            if ids is None or schedule.fhir_id in wanted or occurrence in wanted:
                start = (period.start - _EPOCH) // _MICROSECOND
                results.append(ScheduleResult(start, occurrence, row, period))
    _sort(results)
    return results


def _versions(schedule: Schedule) -> Versions:
    role = schedule.practitioner_role if schedule.practitioner_role_id else None
    role_practitioner = role.practitioner if role is not None and role.practitioner_id else None
    practitioner = schedule.practitioner if schedule.practitioner_id else None
    return _versions_of(
        schedule.organization_id,
        schedule.pk,
        schedule.version,
        *(
            (row.pk, row.version) if row is not None else (None, None)
            for row in (role, role_practitioner, practitioner)
        ),
    )


def _versions_of(
    organization_id: str,
    pk: int,
    version: int,
    role: tuple[int | None, int | None],
    role_practitioner: tuple[int | None, int | None],
    practitioner: tuple[int | None, int | None],
) -> Versions:
    """:data:`Versions` from the rows' (key, version) pairs, a key None where there is no
    such row: the one spelling of the key, whether the rows came as instances or as
    columns (:func:`_integer_search`)."""
    return (
        organization_id,
        pk,
        version,
        *(
            pair if pair[0] is not None else None
            for pair in (role, role_practitioner, practitioner)
        ),
    )


def _integer_rows(organization_id: str, start: datetime, end: datetime) -> list[QuerySet[Any]]:
    """The common search's schedules as integers and text: instants as microseconds, JSON
    as text (parsed only to filter by category), and the keys and versions of the rows
    their resources show. Loading twenty schedules with their roles and practitioners
    cost more than the rest of the search."""
    return [
        Schedule.objects.filter(organization_id=organization_id)
        .filter(window_q(Period(start, end), "planning_start", "planning_end"))
        .order_by()
        .values_list(
            "pk",
            "fhir_id",
            "version",
            EpochMicros("planning_start"),
            EpochMicros("planning_end"),
            "rrule",
            "recurrence_timezone",
            Cast("exdates", TextField()),
            Cast("service_category", TextField()),
            "practitioner_role_id",
            "practitioner_role__version",
            "practitioner_role__practitioner_id",
            "practitioner_role__practitioner__version",
            "practitioner_id",
            "practitioner__version",
        )
    ]


#: (organisation id, window start, window end): :func:`_integer_rows`, compiled once.
_INTEGER_ROWS = CompiledStatement(_integer_rows, kinds="sdd")


def _integer_search(
    *, organization: Organization, service_category: Sequence[Token] | None, window: Period
) -> list[ScheduleResult] | None:
    """The common search without model instances, or None where it would not give the
    same results as :func:`_schedule_search` (an instant with a fraction of a second: the
    expansion cache works in whole seconds, and such rows take the exact path)."""
    window_start, window_end = int(window.start.timestamp()), int(window.end.timestamp())
    if window.start.microsecond or window.end.microsecond:
        return None
    results: list[ScheduleResult] = []
    zone = organization.timezone
    # Committed versions never repeat; inside a transaction they may (a rollback).
    kept = _kept if not connection.in_atomic_block else None
    for (
        pk,
        fhir_id,
        version,
        first_start,
        first_end,
        rrule,
        tzid,
        exdates,
        categories,
        role,
        role_version,
        role_practitioner,
        role_practitioner_version,
        practitioner,
        practitioner_version,
    ) in _INTEGER_ROWS.rows(organization.pk, window.start, window.end):
        if first_start % 1_000_000 or first_end % 1_000_000:
            return None
        if service_category and not token_matches(
            json.loads(categories or "null"), service_category
        ):
            continue
        versions = _versions_of(
            organization.pk,
            pk,
            version,
            (role, role_version),
            (role_practitioner, role_practitioner_version),
            (practitioner, practitioner_version),
        )
        key = (zone, versions, window_start, window_end)
        found = kept.get(key) if kept is not None else None
        if found is None:
            row = ScheduleRow(pk, fhir_id, role, practitioner, versions)
            if not rrule:
                found = (ScheduleResult(first_start, fhir_id, row, None),)
            else:
                stamps = occurrence_stamps(
                    rrule=rrule,
                    first_start=first_start,
                    first_end=first_end,
                    tzid=tzid or zone,
                    exdates=exdates or "[]",
                    window=window,
                    window_start=window_start,
                    window_end=window_end,
                )
                found = tuple(
                    ScheduleResult(
                        start * 1_000_000,
                        fhir_id + occurrence_suffix(start),
                        row,
                        _period(start, end),
                    )
                    for start, end in stamps
                )
            if kept is not None:
                kept.put(key, found, len(found))
        results.extend(found)
    _sort(results)
    return results


#: A schedule's results in a window, by its rows' versions, the organisation's zone and
#: the window (all the expansion depends on): a search that misses the search cache (any
#: edit of the organisation's schedules, or another window) expands only the schedules
#: that changed. Bounded by results. Shared: never changed.
_kept = search_cache.VersionedStore(20_000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _occurrences(schedule: Schedule, organization: Organization, window: Period) -> list[Period]:
    """:func:`schedule_availability` of a recurring schedule, through the per-process cache
    of expansions the Slot search uses (``occurrence_stamps``: whole seconds, keyed by every
    input of the rule). A window or period with a fraction of a second takes the exact,
    uncached path, so the result is the same either way."""
    start, end = schedule.planning_start, schedule.planning_end
    if start.microsecond or end.microsecond or window.start.microsecond or window.end.microsecond:
        return schedule_availability(
            schedule=schedule,
            organization=organization,
            window_start=window.start,
            window_end=window.end,
        )
    stamps = occurrence_stamps(
        rrule=schedule.rrule,
        first_start=(start - _EPOCH) // _MICROSECOND,
        first_end=(end - _EPOCH) // _MICROSECOND,
        tzid=schedule.rule_timezone(organization),
        exdates=json.dumps(schedule.exdates or []),
        window=window,
        window_start=int(window.start.timestamp()),
        window_end=int(window.end.timestamp()),
    )
    return [_period(s, e) for s, e in stamps]


@lru_cache(maxsize=65_536)
def _period(start: int, end: int) -> Period:
    # Periods are immutable, and many schedules share their occurrences' times.
    return Period(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))


def _filtered(
    organization: Organization,
    *,
    ids: Sequence[str] | None,
    actor: str | None,
    active: bool | None,
    window: Period | None,
) -> QuerySet[Schedule]:
    qs = _schedules(organization)
    if ids is not None:
        wanted, lookup = ids_and_parents(ids)
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
        qs = qs.filter(window_q(window, "planning_start", "planning_end"))
    return qs


#: (organisation id, schedule id): the one stored schedule, as ``_schedules`` loads it.
_SCHEDULE_BY_ID = CompiledModelQuery(
    lambda organization_id, fhir_id: (
        Schedule.objects.filter(organization_id=organization_id, fhir_id=fhir_id)
        .select_related("practitioner_role__practitioner", "practitioner")
        .order_by()
    ),
    kinds="ss",
)


def schedule_get(*, organization: Organization, fhir_id: str) -> Schedule:
    """A stored schedule; NotFound (naming the parent) for a generated occurrence id."""
    schedule: Schedule | None = _SCHEDULE_BY_ID.first(organization.pk, fhir_id)
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
    raise generated_not_found("Schedule", fhir_id, parent_exists, split[0] if split else "")


def schedules_overlapping(
    *,
    organization: Organization,
    schedule: Schedule,
    now: datetime,
    horizon: timedelta = timedelta(weeks=8),
) -> list[tuple[Schedule, datetime]]:
    """Other active schedules of the same occupant whose availability overlaps this one's
    within ``horizon`` from now (or from its start), with the first overlap: allowed (one
    person, several services), but worth a warning, since they share the person's time."""
    start = max(now, schedule.planning_start)
    end = start + horizon
    mine = schedule_availability(
        schedule=schedule, organization=organization, window_start=start, window_end=end
    )
    if not mine:
        return []
    found = []
    for other in _schedules(organization).filter(active=True).exclude(pk=schedule.pk):
        if other.occupant != schedule.occupant:
            continue
        theirs = schedule_availability(
            schedule=other, organization=organization, window_start=start, window_end=end
        )
        first = min(
            (
                max(a.start, b.start)
                for a in mine
                for b in theirs
                if a.start < b.end and b.start < a.end
            ),
            default=None,
        )
        if first is not None:
            found.append((other, first))
    return found


def schedule_rows_load(
    *, organization: Organization, rows: Iterable[ScheduleRow]
) -> dict[int, Schedule] | None:
    """The schedules of ``rows`` (by key) as the search read them, loaded with what their
    resources show; None if any of them, or a row it shows, changed or went since (the
    caller then searches again, with instances)."""
    wanted = {row.pk: row for row in rows if row.schedule is None}
    loaded: dict[int, Schedule] = {}
    for schedule in schedules_by_pk(organization=organization, pks=wanted):
        if _versions(schedule) != wanted[schedule.pk].versions:
            return None
        loaded[schedule.pk] = schedule
    return loaded if len(loaded) == len(wanted) else None
