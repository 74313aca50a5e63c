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
from functools import lru_cache
from typing import Any

from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    F,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from scheduling import recurrence
from scheduling.availability import Occupancy, Rules, Seat
from scheduling.db.compiled_query import CompiledStatement, EpochSeconds
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
    "ClaimRead",
    "Occupancies",
    "Occupant",
    "Spans",
    "active_appointments_q",
    "claim_read",
    "occupancies",
    "occupancy_spans",
    "occupied_read",
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


def lapsed_holds_q(now: datetime) -> Q:
    """Holds whose ``held_until`` has passed by ``now``: they read as cancelled
    (:func:`active_appointments_q`) until ``expire_lapsed_holds`` says so in the row."""
    return Q(status=AppointmentStatus.PENDING, held_until__isnull=False, held_until__lte=now)


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


def _span_columns(organization_id: str) -> list[Any]:
    """The columns the engine needs of an appointment row of organisation
    ``organization_id``, in the order :func:`_spans_of_rows` reads them (after a leading
    group column)."""
    plain = Q(rrule="")
    # Group schedules (a capacity above one) are few: one hashed list of them per
    # statement, where a join would look up every appointment's schedule. Its
    # organisation is named so the list is read from that organisation's rows only.
    group_schedules = Schedule.objects.filter(
        organization_id=organization_id, capacity__gt=1
    ).values("pk")
    return [
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
        # Buffers (seconds before and after; no arithmetic where there are none, which is
        # most rows) and, for group slots, the slot's schedule.
        Case(
            When(occupied_start__isnull=True, then=Value(0)),
            default=EpochSeconds("start") - EpochSeconds("occupied_start"),
        ),
        Case(
            When(occupied_end__isnull=True, then=Value(0)),
            default=EpochSeconds("occupied_end") - EpochSeconds("end"),
        ),
        Case(When(schedule_id__in=group_schedules, then=F("schedule_id")), default=None),
    ]


def _appointment_rows(
    organization: Organization, where: Q, window: Period, now: datetime, *, occupied: bool
) -> QuerySet[Appointment]:
    """The active appointments matching ``where`` that may occupy time in ``window``: the
    window widened by the longest buffer when ``occupied`` (a neighbour's buffer reaching
    into it counts), recurring ones by their first start."""
    reach = _REACH if occupied else timedelta(0)
    wide = Period(window.start - reach, window.end + reach)
    return (
        Appointment.objects.filter(where, organization=organization)
        .filter(window_q(wide, "start", "end"))
        .filter(active_appointments_q(now))
        .order_by()
    )


def _spans_of_rows(
    organization: Organization,
    rows: Iterable[tuple[Any, ...]],
    window: Period,
    *,
    occupied: bool = True,
) -> tuple[dict[str, _Spans], int | None]:
    """(busy, tentative, seats) per group value (each row's first column) of rows of
    ``(group, *_span_columns(...))`` during ``window`` (recurring ones expanded), and the
    earliest live hold's expiry. With ``occupied`` the spans are the occupied ranges
    (widened by their schedule's buffers) and bookings of group slots are seats; without
    (a patient's own time) they are the appointments' own start and end. Rows read for a
    wider window give the same answer: only spans overlapping ``window`` are kept."""
    reach = _REACH if occupied else timedelta(0)
    wide = Period(window.start - reach, window.end + reach)
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
    ) in rows:
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
    matching ``where`` that overlap ``window`` (:func:`_spans_of_rows`), and the earliest
    live hold's expiry."""
    rows = _appointment_rows(organization, where, window, now, occupied=occupied).values_list(
        group, *_span_columns(organization.pk)
    )
    return _spans_of_rows(organization, plain_rows(rows), window, occupied=occupied)


def _blocked_slots(organization: Organization, start: datetime, end: datetime) -> QuerySet[Slot]:
    """Stored ``busy-unavailable`` slots overlapping ``[start, end)``."""
    return Slot.objects.filter(
        organization=organization,
        status=SlotStatus.BUSY_UNAVAILABLE,
        start__lt=end,
        end__gt=start,
    ).order_by()


def _block_occupant(
    schedule_pk: int, practitioner: int | None, role: int | None, role_practitioner: int | None
) -> str:
    """Whose time a blocked slot takes: its schedule's occupant (``Schedule.occupant``)."""
    return occupant_key(
        practitioner_id=practitioner or role_practitioner, role_id=role, schedule_id=schedule_pk
    )


#: Occupants a search asks for by name in one compiled statement (more: the ORM's).
COMPILED_OCCUPANTS = 8


def _blocked_rows(organization: Organization, start: datetime, end: datetime) -> QuerySet[Slot]:
    """The columns :func:`_blocked_spans` reads of the blocked slots overlapping a span."""
    return _blocked_slots(organization, start, end).values_list(
        "schedule_id",
        "schedule__practitioner_id",
        "schedule__practitioner_role_id",
        "schedule__practitioner_role__practitioner_id",
        EpochSeconds("start"),
        EpochSeconds("end"),
    )


#: :func:`_blocked_rows` compiled once per process: a search that is not cached runs it,
#: and building and compiling the queryset cost more than PostgreSQL's answer.
_BLOCKED = CompiledStatement(
    lambda organization_id, start, end: [
        _blocked_rows(Organization(pk=organization_id), start, end)
    ],
    kinds="sdd",
)


@lru_cache(maxsize=COMPILED_OCCUPANTS + 1)
def _occupied_statement(count: int | None) -> CompiledStatement:
    """:func:`_appointment_spans`'s read for ``occupancies`` of ``count`` named occupants
    (None: every occupant), compiled once per process. Its instants are arguments as
    given: the window widened by the longest buffer, and now."""

    def make(
        organization_id: str, wide_start: datetime, wide_end: datetime, now: datetime, *keys: str
    ) -> list[QuerySet[Any]]:
        where = ~Q(occupant="") if count is None else Q(occupant__in=list(keys))
        # ``_appointment_rows`` widens the window it is given by the reach again.
        window = Period(wide_start + _REACH, wide_end - _REACH)
        rows = _appointment_rows(
            Organization(pk=organization_id), where, window, now, occupied=True
        )
        return [rows.values_list("occupant", *_span_columns(organization_id))]

    return CompiledStatement(make, kinds="sddd" + "s" * (count or 0))


def _blocked_spans(
    organization: Organization, occupants: set[str] | None, window: Period
) -> dict[str, list[tuple[int, int]]]:
    """Stored ``busy-unavailable`` slots overlapping ``window``, per occupant of their
    schedule: blocked time of one schedule blocks the person on every schedule."""
    rows = _BLOCKED.rows(organization.pk, window.start, window.end)
    blocked: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for schedule_pk, practitioner, role, role_practitioner, start, end in rows:
        key = _block_occupant(schedule_pk, practitioner, role, role_practitioner)
        if occupants is None or key in occupants:
            blocked[key].append((start, end))
    return blocked


def occupied_read(
    *,
    organization: Organization,
    window: Period,
    now: datetime,
    occupants: Iterable[str] | None = None,
) -> tuple[CompiledStatement, tuple[Any, ...]] | None:
    """The compiled statement, with its values, that :func:`occupancies` reads the
    appointments with, or None where it reads them otherwise (many occupants named). A
    caller may send it in one round trip with reads of its own
    (:func:`~scheduling.db.compiled_query.rows_of_each`) and pass its rows to
    :func:`occupancies` as ``rows``."""
    wanted = None if occupants is None else sorted(set(occupants))
    if wanted is not None and len(wanted) > COMPILED_OCCUPANTS:
        return None
    return _occupied_statement(None if wanted is None else len(wanted)).with_values(
        organization.pk, window.start - _REACH, window.end + _REACH, now, *(wanted or ())
    )


def occupancies(
    *,
    organization: Organization,
    window: Period,
    now: datetime,
    occupants: Iterable[str] | None = None,
    exclude_appointment: int | None = None,
    blocks: bool = True,
    blocked: dict[str, list[tuple[int, int]]] | None = None,
    rows: list[tuple[Any, ...]] | None = None,
) -> Occupancies:
    """What occupies each occupant during ``window`` at ``now`` (all of the organisation's
    occupants when ``occupants`` is None): its active appointments on any schedule or naming
    it (recurring ones as their occurrences), the blocked time of any of its schedules, and
    live holds (tentative). ``exclude_appointment`` (a pk) leaves one appointment out, for
    moving it within its own time. ``blocks=False`` leaves blocked time out (import keeps
    bookings that blocked time covers: a block never hides a booking). ``blocked``: the
    window's blocked time per occupant as the caller already read it (every stored
    ``busy-unavailable`` slot overlapping ``window``, in epoch seconds), instead of reading
    it again. ``rows``: the rows of :func:`occupied_read`'s statement for the same arguments,
    as the caller already read them. Two queries (one with ``blocked``, none with both).
    """
    wanted = None if occupants is None else set(occupants)
    if rows is None and exclude_appointment is None:
        read = occupied_read(organization=organization, window=window, now=now, occupants=wanted)
        if read is not None:
            statement, values = read
            rows = statement.rows(*values)
    elif rows is not None and exclude_appointment is not None:
        raise ValueError("Rows read by occupied_read() leave no appointment out.")
    if rows is not None:
        spans, valid_until = _spans_of_rows(organization, rows, window)
    else:
        where = ~Q(occupant="") if wanted is None else Q(occupant__in=sorted(wanted))
        if exclude_appointment is not None:
            where &= ~Q(pk=exclude_appointment)
        spans, valid_until = _appointment_spans(organization, where, "occupant", window, now)
    if blocks:
        if blocked is None:
            blocked = _blocked_spans(organization, wanted, window)
        for key, spans_of_key in blocked.items():
            if wanted is None or key in wanted:
                spans[key][0].extend(spans_of_key)
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


# --------------------------------------------------------------------------- one booking


_PARTS = frozenset("ophbs")


def _kind(tag: str) -> RawSQL:
    """A row's part of the claim statement, as a literal (no parameter: PostgreSQL could
    not type a bare parameter in a select list)."""
    if tag not in _PARTS:
        raise ValueError(f"Unknown part {tag!r}")
    # One of the module's own one-letter tags, never outside input.
    return RawSQL(f"'{tag}'", (), output_field=CharField())  # noqa: S611


def _nulls(count: int) -> list[Value]:
    # An untyped NULL in SQL (the type is only Django's): it lines up with any column.
    return [Value(None, output_field=BigIntegerField())] * count


def _claim_querysets(
    organization_id: str,
    occupant: str,
    patient_pk: int,
    exclude_pk: int,
    schedule_pk: int,
    now: datetime,
    wide_start: datetime,
    wide_end: datetime,
    occupied_start: datetime,
    occupied_end: datetime,
    patient_start: datetime,
    patient_end: datetime,
    slot_start: datetime,
) -> list[QuerySet[Any]]:
    """The parts of the claim statement, each ``(part, *12 columns)``: see :class:`ClaimRead`.

    The querysets of the separate loaders (:func:`occupancies`, :func:`patient_occupancy`,
    the stored slot of :func:`scheduling.services.claims.slot_find`, the lapsed holds of
    :func:`~scheduling.services.claims.expire_lapsed_holds`), so the one statement reads
    what they would. Every instant is an argument as given (the compiled statement sees
    only its arguments): ``wide_*`` is the occupied span widened by the longest buffer.
    Columns a part does not need are NULL; a part's integers go where the appointments'
    integers are, so the columns line up.
    """
    org = Organization(pk=organization_id)
    not_excluded = ~Q(pk=exclude_pk)
    wide = Period(wide_start, wide_end)
    appointments = _appointment_rows(
        org, Q(occupant=occupant) & not_excluded, wide, now, occupied=False
    ).values_list(_kind("o"), *_span_columns(organization_id))
    own = _appointment_rows(
        org,
        Q(patient_id=patient_pk) & not_excluded,
        Period(patient_start, patient_end),
        now,
        occupied=False,
    ).values_list(_kind("p"), *_span_columns(organization_id))
    blocked = _blocked_slots(org, occupied_start, occupied_end).values_list(
        _kind("b"),
        EpochSeconds("start"),
        EpochSeconds("end"),
        "schedule_id",
        "schedule__practitioner_id",
        *_nulls(1),
        "schedule__practitioner_role_id",
        "schedule__practitioner_role__practitioner_id",
        *_nulls(5),
    )
    stored = (
        Slot.objects.filter(organization=org, schedule_id=schedule_pk, start=slot_start)
        .order_by()
        .values_list(_kind("s"), *_nulls(2), "id", *_nulls(1), "fhir_id", *_nulls(7))
    )
    # Lapsed holds of the occupant or the patient near the time: only whether any are.
    lapsed = (
        Appointment.objects.filter(
            Q(occupant=occupant) | Q(patient_id=patient_pk),
            lapsed_holds_q(now),
            organization=org,
            start__lt=wide_end,
            end__gt=wide_start,
        )
        .order_by()
        .values_list(_kind("h"), *_nulls(2), "id", *_nulls(9))
    )
    return [appointments, own, blocked, stored, lapsed]


_CLAIM = CompiledStatement(_claim_querysets, kinds="ssiii" + "d" * 8)


@dataclass(frozen=True, slots=True)
class ClaimRead:
    """Everything the locked check of one booking reads, from ONE statement
    (:func:`claim_read`): what occupies the occupant (appointments, blocked time) and the
    patient, the stored slots of the schedule at the start, and whether lapsed holds are
    near. Read for a slot from ``start`` to at most ``reach``: for any slot inside that
    span the answers are exactly those of the separate loaders, since each keeps only what
    overlaps the slot's own window (:meth:`covers` says whether a slot fits; the caller
    reads a longer stored slot the usual way).

    Rows: ``(part, ...)`` with part ``o`` (the occupant's appointments, in the layout of
    :func:`_span_columns`), ``p`` (the patient's), ``b`` (blocked slots: start, end, their
    schedule, practitioner, -, role, role's practitioner), ``s`` (a stored slot of the
    schedule at the start: -, -, pk, -, fhir_id), ``h`` (a lapsed hold: -, -, pk).
    """

    organization: Organization
    occupant: str
    start: datetime
    reach: datetime
    rows: list[tuple[Any, ...]]

    def covers(self, start: datetime, end: datetime) -> bool:
        return self.start <= start and end <= self.reach

    def stored_slot_pk(self) -> int | None:
        """The stored slot of the schedule at the start with the lowest fhir_id (the one
        the Slot search shows and a booking takes), or None."""
        stored = sorted((row[5], row[3]) for row in self.rows if row[0] == "s")
        return stored[0][1] if stored else None

    def lapsed_holds(self) -> bool:
        return any(row[0] == "h" for row in self.rows)

    def occupancy(self, window: Period) -> Occupancy:
        """What :func:`occupancies` says of the occupant during ``window``."""
        spans, _ = _spans_of_rows(
            self.organization, (row for row in self.rows if row[0] == "o"), window
        )
        busy, tentative, seats = spans.get("o", ([], [], []))
        lo, hi = ts(window.start), ts(window.end)
        for _part, start, end, schedule_pk, practitioner, _, role, role_practitioner, *_ in (
            row for row in self.rows if row[0] == "b"
        ):
            key = _block_occupant(schedule_pk, practitioner, role, role_practitioner)
            # As _blocked_spans: a block of any of the occupant's schedules.
            if key == self.occupant and start < hi and end > lo:
                busy.append((start, end))
        return Occupancy.of(busy, tentative, seats)

    def patient_occupancy(self, window: Period) -> Occupancy:
        """What :func:`patient_occupancy` says of the patient during ``window``."""
        spans, _ = _spans_of_rows(
            self.organization, (row for row in self.rows if row[0] == "p"), window, occupied=False
        )
        busy, tentative, _seats = spans.get("p", ([], [], []))
        return Occupancy.of([*busy, *tentative])


def claim_read(
    *,
    organization: Organization,
    occupant: str,
    patient_pk: int,
    schedule_pk: int,
    start: datetime,
    reach: datetime,
    before: timedelta,
    after: timedelta,
    now: datetime,
    exclude_appointment: int | None = None,
) -> ClaimRead:
    """One statement for the locked check of a slot of ``schedule_pk`` starting at
    ``start`` and ending by ``reach``, whose schedule has buffers ``before`` and ``after``
    (:class:`ClaimRead`). Call under the occupant's and the patient's locks."""
    occupied_start, occupied_end = start - before, reach + after
    rows = _CLAIM.rows(
        organization.pk,
        occupant,
        patient_pk,
        exclude_appointment or 0,
        schedule_pk,
        now,
        occupied_start - _REACH,
        occupied_end + _REACH,
        occupied_start,
        occupied_end,
        start,
        reach,
        start,
    )
    return ClaimRead(organization, occupant, start, reach, rows)
