"""What occupies an occupant (or a patient) in a window: the rows the engine needs.

One loader for every path: Slot search, the booking services (under the occupant's lock),
the admin calendar and import read occupancy here and hand it to
:class:`scheduling.availability.Occupancy`, which alone decides free or busy. Plain rows come
back as integer timestamps from one indexed query; the few recurring rows are expanded
through the cached, age-independent expansion.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, F, Q, TextField, Value, When
from django.db.models.functions import Cast, Coalesce

from scheduling import recurrence
from scheduling.availability import Occupancy, Rules, Seat
from scheduling.db.compiled_query import EpochSeconds
from scheduling.db.epoch import EpochMicros, plain_rows
from scheduling.models import (
    INACTIVE_APPOINTMENT_STATUSES,
    MAX_BUFFER_MINUTES,
    Appointment,
    AppointmentStatus,
    Organization,
    Schedule,
    Slot,
    SlotStatus,
    occupant_key,
)
from scheduling.recurrence import Period
from scheduling.selectors.common import occurrence_stamps, ts, window_q

__all__ = [
    "Occupancies",
    "Occupant",
    "Spans",
    "active_appointments_q",
    "occupancies",
    "occupancy_spans",
    "occupying_appointments",
    "patient_occupancy",
    "rules_of",
    "schedule_rules",
]


def rules_of(
    notice_minutes: int | None,
    advance_days: int | None,
    before_minutes: int | None,
    after_minutes: int | None,
    capacity: int | None,
) -> Rules:
    """The engine's :class:`~scheduling.availability.Rules` from a schedule's rule columns."""
    return Rules(
        notice=(notice_minutes or 0) * 60,
        advance=None if advance_days is None else advance_days * 86_400,
        before=(before_minutes or 0) * 60,
        after=(after_minutes or 0) * 60,
        capacity=capacity or 1,
    )


def schedule_rules(schedule: Schedule) -> Rules:
    """The engine's rules of one schedule."""
    return rules_of(
        schedule.minimum_notice_minutes,
        schedule.maximum_advance_days,
        schedule.buffer_before_minutes,
        schedule.buffer_after_minutes,
        schedule.capacity,
    )


def active_appointments_q(now: datetime) -> Q:
    """Appointments that occupy time at ``now``: any status but cancelled, no-show and
    entered-in-error, and not a hold whose ``held_until`` has passed (a lapsed hold reads as
    cancelled from that instant, whether or not anything has tidied it yet)."""
    return ~Q(status__in=list(INACTIVE_APPOINTMENT_STATUSES)) & ~Q(
        status=AppointmentStatus.PENDING, held_until__lte=now
    )


@dataclass(frozen=True, slots=True)
class Occupancies:
    """Occupancy per occupant key, and until when it holds without a new read.

    ``valid_until`` is the earliest ``held_until`` of the live holds read (integer seconds),
    or None: at that instant a hold lapses and frees its time, so a cached copy must be
    rebuilt although no row changed.
    """

    by_occupant: dict[str, Occupancy]
    valid_until: int | None

    def get(self, key: str) -> Occupancy:
        return self.by_occupant.get(key) or _EMPTY


_EMPTY = Occupancy.of()


#: Spans of one group value: (busy, tentative, seats).
Spans = tuple[list[tuple[int, int]], list[tuple[int, int]], list[Seat]]
_Spans = Spans

#: Reads widen their window by the longest buffer a booking may have, so a neighbour's
#: buffer reaching into the window is seen; the engine then compares exact ranges.
_REACH = timedelta(minutes=MAX_BUFFER_MINUTES)


def _appointment_spans(
    organization: Organization,
    where: Q,
    group: str,
    window: Period,
    now: datetime,
    *,
    occupied: bool = True,
) -> tuple[dict[str, _Spans], int | None]:
    """(busy, tentative, seats) per value of column ``group`` for the active appointments
    matching ``where`` that overlap ``window`` (recurring ones expanded), and the earliest
    live hold's expiry. With ``occupied`` the spans are the occupied ranges (widened by
    their schedule's buffers) and bookings of group slots are seats; without (a patient's
    own time) they are the appointments' own start and end."""
    plain = Q(rrule="")
    reach = _REACH if occupied else timedelta(0)
    wide = Period(window.start - reach, window.end + reach)
    rows = (
        Appointment.objects.filter(where, organization=organization)
        .filter(window_q(wide, "start", "end"))
        .filter(active_appointments_q(now))
        .order_by()
        .values_list(
            group,
            EpochSeconds("start"),
            EpochSeconds("end"),
            Case(
                When(status=AppointmentStatus.PENDING, held_until__isnull=False, then=Value(1)),
                default=Value(0),
            ),
            EpochSeconds("held_until"),
            "rrule",
            # The rule's own columns only for the few recurring rows: NULL is free to load.
            Case(When(plain, then=None), default=EpochMicros("start")),
            Case(When(plain, then=None), default=EpochMicros("end")),
            Case(When(plain, then=Value("")), default=F("recurrence_timezone")),
            Case(When(plain, then=None), default=Cast("exdates", TextField())),
            # Buffers (seconds before and after) and, for group slots, the slot's schedule.
            EpochSeconds("start") - EpochSeconds(Coalesce("occupied_start", "start")),
            EpochSeconds(Coalesce("occupied_end", "end")) - EpochSeconds("end"),
            Case(When(schedule__capacity__gt=1, then=F("schedule_id")), default=None),
        )
    )
    spans: dict[str, _Spans] = defaultdict(lambda: ([], [], []))
    lo, hi = ts(window.start), ts(window.end)
    wide_start, wide_end = ts(wide.start), ts(wide.end)
    valid_until: int | None = None
    for (
        key,
        start,
        end,
        hold,
        held_until,
        rrule,
        start_us,
        end_us,
        tzid,
        exdates,
        before,
        after,
        group_schedule,
    ) in plain_rows(rows):
        busy, tentative, seats = spans[str(key)]
        if hold and held_until is not None:
            valid_until = held_until if valid_until is None else min(valid_until, held_until)
        if rrule:
            periods = occurrence_stamps(
                rrule=rrule,
                first_start=start_us,
                first_end=end_us,
                tzid=tzid or organization.timezone,
                exdates=exdates,
                window=wide,
                window_start=wide_start,
                window_end=wide_end,
            )
        else:
            periods = [(start, end)]
        if not occupied:
            before = after = 0
            group_schedule = None
        for s, e in periods:
            s, e = s - (before or 0), e + (after or 0)
            if s >= hi or e <= lo:
                continue
            if group_schedule is not None:
                # A seat of the group slot that starts where the booking does.
                seats.append((s, e, (group_schedule, s + (before or 0))))
            elif hold:
                tentative.append((s, e))
            else:
                busy.append((s, e))
    return spans, valid_until


def _blocked_spans(
    organization: Organization, occupants: set[str] | None, window: Period
) -> dict[str, list[tuple[int, int]]]:
    """Stored ``busy-unavailable`` slots overlapping ``window``, per occupant of their
    schedule: blocked time of one schedule blocks the person on every schedule."""
    rows = (
        Slot.objects.filter(
            organization=organization,
            status=SlotStatus.BUSY_UNAVAILABLE,
            start__lt=window.end,
            end__gt=window.start,
        )
        .order_by()
        .values_list(
            "schedule_id",
            "schedule__practitioner_id",
            "schedule__practitioner_role_id",
            "schedule__practitioner_role__practitioner_id",
            EpochSeconds("start"),
            EpochSeconds("end"),
        )
    )
    blocked: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for schedule_pk, practitioner, role, role_practitioner, start, end in plain_rows(rows):
        key = occupant_key(
            practitioner_id=practitioner or role_practitioner,
            role_id=role,
            schedule_id=schedule_pk,
        )
        if occupants is None or key in occupants:
            blocked[key].append((start, end))
    return blocked


def occupancies(
    *,
    organization: Organization,
    window: Period,
    now: datetime,
    occupants: Iterable[str] | None = None,
    exclude_appointment: int | None = None,
    blocks: bool = True,
) -> Occupancies:
    """What occupies each occupant during ``window`` at ``now`` (all of the organisation's
    occupants when ``occupants`` is None): its active appointments on any schedule or naming
    it (recurring ones as their occurrences), the blocked time of any of its schedules, and
    live holds (tentative). ``exclude_appointment`` (a pk) leaves one appointment out, for
    moving it within its own time. ``blocks=False`` leaves blocked time out (import keeps
    bookings that blocked time covers: a block never hides a booking). Two queries.
    """
    wanted = None if occupants is None else set(occupants)
    where = ~Q(occupant="") if wanted is None else Q(occupant__in=sorted(wanted))
    if exclude_appointment is not None:
        where &= ~Q(pk=exclude_appointment)
    spans, valid_until = _appointment_spans(organization, where, "occupant", window, now)
    if blocks:
        for key, blocked in _blocked_spans(organization, wanted, window).items():
            spans[key][0].extend(blocked)
    return Occupancies(
        {key: Occupancy.of(*parts) for key, parts in spans.items()},
        valid_until,
    )


def patient_occupancy(
    *,
    organization: Organization,
    patient_pk: int,
    window: Period,
    now: datetime,
    exclude_appointment: int | None = None,
) -> Occupancy:
    """The patient's own active appointments (and live holds) during ``window``: a patient
    is never in two places at once either."""
    where = Q(patient_id=patient_pk)
    if exclude_appointment is not None:
        where &= ~Q(pk=exclude_appointment)
    spans, _ = _appointment_spans(organization, where, "patient_id", window, now, occupied=False)
    busy, tentative, _seats = spans.get(str(patient_pk), ([], [], []))
    return Occupancy.of([*busy, *tentative])


def occupancy_spans(
    *,
    organization: Organization,
    window: Period,
    now: datetime,
    occupants: Iterable[str],
    patients: Iterable[int],
    exclude_appointments: Iterable[int] = (),
) -> tuple[dict[str, Spans], dict[str, Spans]]:
    """The raw (unmerged) spans behind :func:`occupancies` (without blocked time) and
    :func:`patient_occupancy` for many occupants and patients at once: (per occupant key,
    per patient pk as text). For set-wise checks (an import) that build the engine's
    :class:`~scheduling.availability.Occupancy` in memory from these and their own rows.
    Two queries."""
    excluded = ~Q(pk__in=sorted(set(exclude_appointments)))
    keys = sorted({k for k in occupants if k})
    pks = sorted(set(patients))
    by_occupant: dict[str, Spans] = {}
    by_patient: dict[str, Spans] = {}
    if keys:
        by_occupant, _ = _appointment_spans(
            organization, Q(occupant__in=keys) & excluded, "occupant", window, now
        )
    if pks:
        by_patient, _ = _appointment_spans(
            organization,
            Q(patient_id__in=pks) & excluded,
            "patient_id",
            window,
            now,
            occupied=False,
        )
    return dict(by_occupant), dict(by_patient)


@dataclass(frozen=True, slots=True)
class Occupant:
    """One active appointment (or one occurrence of a recurring one) that occupies time,
    named for a message: ``Appointment/{id}``, or the occurrence id and its parent."""

    label: str
    start: int
    end: int
    patient: str = ""


def occupying_appointments(
    *,
    organization: Organization,
    window: Period,
    now: datetime,
    occupant: str | None = None,
    patient_pk: int | None = None,
    exclude_appointment: int | None = None,
    exclude_appointments: Iterable[int] = (),
) -> list[Occupant]:
    """The active appointments of ``occupant`` or of the patient during ``window``, each
    occurrence on its own, with ids: to name a clash the engine found (a cold path)."""
    who = Q()
    if occupant:
        who |= Q(occupant=occupant)
    if patient_pk is not None:
        who |= Q(patient_id=patient_pk)
    if not who:
        return []
    rows = (
        Appointment.objects.filter(who, organization=organization)
        .filter(window_q(window, "start", "end"))
        .filter(active_appointments_q(now))
        .exclude(pk__in=[exclude_appointment or 0, *exclude_appointments])
        .select_related("patient")
        .order_by("start", "fhir_id")
    )
    found: list[Occupant] = []
    for row in rows:
        if not row.rrule:
            found.append(
                Occupant(f"Appointment/{row.fhir_id}", ts(row.start), ts(row.end), str(row.patient))
            )
            continue
        for period in recurrence.expand(
            rrule=row.rrule,
            first_start=row.start,
            first_end=row.end,
            tzid=row.rule_timezone(organization),
            exdates=row.exdate_values(),
            window_start=window.start,
            window_end=window.end,
        ):
            occurrence = recurrence.occurrence_id(row.fhir_id, period.start)
            found.append(
                Occupant(
                    f"Appointment/{occurrence} (an occurrence of Appointment/{row.fhir_id})",
                    ts(period.start),
                    ts(period.end),
                    str(row.patient),
                )
            )
    found.sort(key=lambda o: (o.start, o.label))
    return found
