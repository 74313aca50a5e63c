"""Reads of the scheduling domain (HackSoft style: keyword-only, ``organization`` required).

No HTTP and no FHIR JSON here: selectors return model instances and periods; the API maps
them. Every search runs a fixed number of queries, independent of the number of results
(recurrences and slots are expanded in Python from the rows of those few queries).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from django.db.models import Q, QuerySet

from scheduling import recurrence
from scheduling.errors import NotFound
from scheduling.models import (
    INACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    Organization,
    Patient,
    Schedule,
    Slot,
    SlotStatus,
)
from scheduling.recurrence import Period

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


def cut_slots(period: Period, minutes: int) -> list[Period]:
    """Back-to-back slots of ``minutes`` inside ``period`` (a partial tail is dropped)."""
    step = timedelta(minutes=minutes)
    out: list[Period] = []
    start = period.start
    while start + step <= period.end:
        out.append(Period(start, start + step))
        start += step
    return out


def _busy_intervals(
    organization: Organization, schedule_pks: list[int], window: Period
) -> dict[int, list[Period]]:
    """Active appointments per schedule in the window (one query; recurring ones expanded)."""
    busy: dict[int, list[Period]] = defaultdict(list)
    if not schedule_pks:
        return busy
    rows = (
        Appointment.objects.filter(organization=organization, schedule_id__in=schedule_pks)
        .filter(_window_q(window, "start", "end"))
        .exclude(status__in=list(INACTIVE_APPOINTMENT_STATUSES))
        .only("schedule_id", "start", "end", "rrule", "recurrence_timezone", "exdates")
    )
    for appt in rows:
        assert appt.schedule_id is not None
        if appt.rrule:
            busy[appt.schedule_id].extend(
                _expand(
                    appt, organization, window.start, window.end, (appt.start, appt.end), window
                )
            )
        else:
            busy[appt.schedule_id].append(Period(appt.start, appt.end))
    return busy


class SlotResults(Sequence[SlotResult]):
    """The sorted matches of a slot search, materialised only when indexed or sliced.

    A week of a busy clinic is thousands of slots; a page shows a hundred. Rows are kept
    as ``(start_ts, id, seq, payload)`` tuples and turned into :class:`SlotResult` objects
    per page.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: list[tuple[int, str, int, Any]]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def _make(row: tuple[int, str, int, Any]) -> SlotResult:
        _ts, slot_id, _seq, payload = row
        if isinstance(payload, Slot):
            return SlotResult(payload.schedule, slot=payload)
        schedule, start_ts, end_ts, status = payload
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
            return [self._make(row) for row in self._rows[index]]
        return self._make(self._rows[index])


def _ts(value: datetime) -> int:
    return int(value.timestamp())


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
    (the stored one wins). Three queries, whatever the size of the result. Ordered by
    start, then id.
    """
    parents: set[str] | None = None
    if schedule_ids is not None:
        _, parents = _ids_and_parents(schedule_ids)
    schedules_qs = Schedule.objects.filter(
        organization=organization, active=True, slot_minutes__isnull=False
    ).filter(_window_q(window, "planning_start", "planning_end"))
    if parents is not None:
        schedules_qs = schedules_qs.filter(fhir_id__in=parents)
    schedules = list(schedules_qs)
    busy = _busy_intervals(organization, [s.pk for s in schedules], window)

    stored_qs = Slot.objects.filter(
        organization=organization, start__lt=window.end, end__gt=window.start
    ).select_related("schedule")
    if parents is not None:
        stored_qs = stored_qs.filter(schedule__fhir_id__in=parents)
    wanted_status = set(statuses) if statuses else None
    rows: list[tuple[int, str, int, Any]] = []
    stored_keys: set[tuple[int, int]] = set()
    stored_ids: set[str] = set()
    for slot in stored_qs:
        stored_keys.add((slot.schedule_id, _ts(slot.start)))
        stored_ids.add(slot.fhir_id)
        if slot.status == SlotStatus.BUSY_UNAVAILABLE:
            busy[slot.schedule_id].append(Period(slot.start, slot.end))
        if wanted_status is not None and slot.status not in wanted_status:
            continue
        if service_category and not token_matches(slot.service_category, service_category):
            continue
        rows.append((_ts(slot.start), slot.fhir_id, len(rows), slot))

    # Integer timestamps: aware-datetime arithmetic and hashing dominate otherwise.
    window_start, window_end, now_ts = _ts(window.start), _ts(window.end), _ts(now)
    stamps: dict[int, str] = {}  # many schedules share slot starts: format each once
    free, busy_status = str(SlotStatus.FREE), str(SlotStatus.BUSY)
    want_free = wanted_status is None or free in wanted_status
    want_busy = wanted_status is None or busy_status in wanted_status
    for schedule in schedules:
        if not (want_free or want_busy):
            break
        if service_category and not token_matches(schedule.service_category, service_category):
            continue
        schedule.organization = organization
        assert schedule.slot_minutes is not None
        pk = schedule.pk
        prefix = f"{schedule.fhir_id}-"
        blocked = [(_ts(b.start), _ts(b.end)) for b in busy.get(pk, [])]
        step = schedule.slot_minutes * 60
        for availability in schedule_availability(
            schedule=schedule,
            organization=organization,
            window_start=window.start,
            window_end=window.end,
        ):
            current = _ts(availability.start)
            last_start = _ts(availability.end) - step
            while current <= last_start:
                slot_start, slot_end = current, current + step
                current = slot_end
                if slot_start >= window_end or slot_end <= window_start:
                    continue
                if (pk, slot_start) in stored_keys:
                    continue
                stamp = stamps.get(slot_start)
                if stamp is None:
                    stamp = f"{datetime.fromtimestamp(slot_start, UTC):%Y%m%dT%H%M%SZ}"
                    stamps[slot_start] = stamp
                slot_id = prefix + stamp
                if slot_id in stored_ids:
                    continue
                taken = slot_start < now_ts or (
                    bool(blocked) and any(b0 < slot_end and b1 > slot_start for b0, b1 in blocked)
                )
                if taken:
                    if not want_busy:
                        continue
                    status = busy_status
                else:
                    if not want_free:
                        continue
                    status = free
                rows.append(
                    (slot_start, slot_id, len(rows), (schedule, slot_start, slot_end, status))
                )
    rows.sort()
    return SlotResults(rows)


def utc_now() -> datetime:
    return datetime.now(UTC)
