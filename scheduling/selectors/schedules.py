"""Reads of schedules: search (recurring ones expanded in a window) and read by id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
