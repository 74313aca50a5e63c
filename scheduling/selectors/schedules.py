"""Reads of schedules: search (recurring ones expanded in a window) and read by id."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.db.models import (
    Q,
    QuerySet,
)

from scheduling import recurrence
from scheduling.db import search_cache
from scheduling.db.compiled_query import CompiledModelQuery
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
    overlaps,
    token_matches,
    window_q,
)


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


class ScheduleResults(list[ScheduleResult]):
    """A Schedule search's results, and ``memo``: the resources the API layer mapped for
    them, kept with the (cached) list so the searches it serves map each result once. The
    results and the resources are shared: neither may be changed."""

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
) -> ScheduleResults:
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

    def build() -> tuple[ScheduleResults, int]:
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
        if window is None or not schedule.rrule:
            if ids is None or schedule.fhir_id in wanted:
                results.append(ScheduleResult(schedule))
            continue
        for period in _occurrences(schedule, organization, window):
            result = ScheduleResult(schedule, period)
            if ids is None or schedule.fhir_id in wanted or result.id in wanted:
                results.append(result)
    results.sort(key=lambda r: (r.start, r.id))
    return results


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
