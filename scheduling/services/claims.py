"""Taking a practitioner's time: the locks, the slot, and the engine's verdict for writes.

Every write that makes an appointment occupy time (booking, holding, rescheduling, staff
booking in the admin, import) comes through here, inside its transaction:

1. :func:`lock_occupants` locks one ``OccupantLock`` row per occupant and per patient
   involved (``SELECT ... FOR UPDATE``, in key order so two writers never wait on each other
   in a cycle). Writers for one person queue; writers for different people do not. SQLite
   runs IMMEDIATE transactions, so there every writer queues on the database lock anyway.
2. :func:`slot_find` finds the slot of the schedule that starts exactly then, by the same
   cutting the Slot search uses (:func:`scheduling.availability.cut`).
3. :func:`slot_claim` loads what occupies the occupant and the patient
   (:mod:`scheduling.selectors.occupancy`, the loader Slot search uses) and asks the engine
   (:func:`scheduling.availability.slot_status`). Anything but free is SlotTaken.

Under the lock nothing can change what the check read, and the PostgreSQL exclusion
constraints (migration 0004) refuse an overlap of plain appointments per occupant and per
patient even if a path forgot step 1: an IntegrityError from them is SlotTaken too.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection
from django.db.models import Q

from scheduling import availability, recurrence
from scheduling.db.compiled_query import CompiledStatement
from scheduling.errors import BusinessRuleViolation, SlotTaken, Text, gettext_noop
from scheduling.models import (
    MAX_BUFFER_MINUTES,
    Appointment,
    AppointmentStatus,
    AuditEvent,
    OccupantLock,
    Organization,
    Patient,
    Schedule,
    Slot,
    SlotStatus,
)
from scheduling.recurrence import Period
from scheduling.selectors.appointments import HOLD_EXPIRED_REASON
from scheduling.selectors.occupancy import (
    ClaimRead,
    Occupant,
    active_appointments_q,
    claim_read,
    lapsed_holds_q,
    occupancies,
    occupancy_spans,
    occupying_appointments,
    patient_occupancy,
    schedule_rules,
)
from scheduling.services.common import audit, clinic_time, iso

__all__ = [
    "CLASH_HORIZON",
    "HOLD_EXPIRED",
    "ClashCheck",
    "FoundSlot",
    "appointment_clashes",
    "cancellation_cutoff_check",
    "expire_lapsed_holds",
    "integrity_conflict",
    "lock_occupants",
    "patient_lock_key",
    "rules_check",
    "seat_for",
    "slot_claim",
    "slot_find",
    "slot_take",
]

#: The shortest span :func:`slot_take` reads ahead of a slot's start in its one statement:
#: a stored slot longer than the schedule's slots (and than this) is read again.
CLAIM_SPAN = timedelta(hours=1)

#: ``cancelationReason`` of a hold that lapsed (the same text reads show before tidying).
HOLD_EXPIRED = HOLD_EXPIRED_REASON

#: Constraints whose violation means "that time is taken" (PostgreSQL names them; SQLite
#: names the unique index's columns instead, see :func:`integrity_conflict`).
_OVERLAP_CONSTRAINTS = (
    "excl_appointment_occupant_overlap",
    "excl_appointment_patient_overlap",
    "uniq_active_appointment_per_occupant_start",
)


def patient_lock_key(patient: Patient) -> str:
    return f"patient:{patient.pk}"


def lock_occupants(
    *,
    organization: Organization,
    keys: set[str],
    then: tuple[CompiledStatement, tuple[Any, ...]] | None = None,
) -> list[tuple[Any, ...]]:
    """Lock the rows of ``keys`` (occupant keys and :func:`patient_lock_key`) until the end
    of the transaction, creating missing rows first. Must run inside ``atomic()``.

    ``then``: a compiled statement and its arguments, run once the locks are held, in the
    same round trip as the locks on PostgreSQL (:meth:`CompiledStatement.rows_after`); its
    rows are returned (else none). It reads with a snapshot taken after the lock wait,
    so it sees what the lock's last holder committed."""
    wanted = sorted(k for k in keys if k)
    # One statement: a missing row is created (and locked, being new), an existing one is
    # locked by the conflict's DO UPDATE, as SELECT ... FOR UPDATE would lock it; its
    # ``WHERE false`` leaves the row itself unwritten (PostgreSQL locks every conflicting
    # row whatever the WHERE says), so a booking writes no new version of each lock row
    # it takes: no WAL, and no dead versions for the next writer to walk. Rows are taken
    # in the order given, key order, the same for every writer. Written out rather than
    # bulk_create(update_conflicts=True), which built and compiled the same statement
    # for every booking; PostgreSQL and SQLite (3.24+) both know this upsert. An import
    # may lock thousands: in batches, within both databases' parameter limits.
    locks = [
        (_lock_sql(len(batch)), [v for key in batch for v in (organization.pk, key)])
        for batch in (
            wanted[first : first + _LOCK_BATCH] for first in range(0, len(wanted), _LOCK_BATCH)
        )
    ]
    if then is not None:
        statement, values = then
        return statement.rows_after(locks, *values)
    if locks:
        with connection.cursor() as cursor:
            for sql, params in locks:
                cursor.execute(sql, params)
    return []


_LOCK_BATCH = 500


@functools.cache
def _lock_sql(count: int) -> str:
    table = connection.ops.quote_name(OccupantLock._meta.db_table)
    rows = ", ".join(["(%s, %s)"] * count)
    # Only the model's own table name and placeholders go into the text; values are bound.
    return (
        f'INSERT INTO {table} ("organization_id", "key") VALUES {rows} '  # noqa: S608
        'ON CONFLICT ("organization_id", "key") DO UPDATE SET "key" = EXCLUDED."key" '
        "WHERE false"
    )


@dataclass(frozen=True, slots=True)
class FoundSlot:
    start: datetime
    end: datetime
    stored: Slot | None


def _windows_containing(
    *, organization: Organization, schedule: Schedule, instant: datetime
) -> list[Period]:
    if not schedule.is_recurring:
        if schedule.planning_start <= instant < schedule.planning_end:
            return [Period(schedule.planning_start, schedule.planning_end)]
        return []
    return recurrence.expand(
        rrule=schedule.rrule,
        first_start=schedule.planning_start,
        first_end=schedule.planning_end,
        tzid=schedule.rule_timezone(organization),
        exdates=schedule.exdate_values(),
        window_start=instant,
        window_end=instant + timedelta(microseconds=1),
    )


def slot_find(
    *,
    organization: Organization,
    schedule: Schedule,
    start: datetime,
    occurrence_start: datetime | None = None,
    field: str = "start",
    claim: ClaimRead | None = None,
) -> FoundSlot:
    """The slot of ``schedule`` starting exactly at ``start``: a stored slot of the schedule
    at that start (it replaces the generated one, as in Slot search), else the generated one.
    ``occurrence_start`` restricts it to one occurrence of a recurring schedule.
    BusinessRuleViolation (naming ``field``) when there is no such slot. With ``claim``
    (read for this start) the stored slot is known already: read only when there is one."""
    stored: Slot | None
    if claim is not None:
        stored_pk = claim.stored_slot_pk()
        stored = None if stored_pk is None else Slot.objects.get(pk=stored_pk)
    else:
        stored = (
            Slot.objects.filter(organization=organization, schedule=schedule, start=start)
            .order_by("fhir_id")
            .first()
        )
    if stored is not None and occurrence_start is None:
        if stored.status == SlotStatus.ENTERED_IN_ERROR:
            raise BusinessRuleViolation(
                gettext_noop(
                    "The slot at %(start)s of schedule '%(schedule)s' was entered in error; "
                    "search Slot?schedule=... for the slots on offer."
                ),
                expression=[field],
                params={
                    "start": clinic_time(start, organization.zone),
                    "schedule": schedule.fhir_id,
                },
            )
        return FoundSlot(stored.start, stored.end, stored)
    duration = schedule.slot_duration
    if duration is not None and start.microsecond == 0:
        step = int(duration.total_seconds())
        at = int(start.timestamp())
        for window in _windows_containing(
            organization=organization, schedule=schedule, instant=start
        ):
            if occurrence_start is not None and window.start != occurrence_start:
                continue
            span = (int(window.start.timestamp()), int(window.end.timestamp()))
            if at in availability.cut([span], step, at, at + 1):
                return FoundSlot(start, start + duration, stored)
    if stored is not None:
        return FoundSlot(stored.start, stored.end, stored)
    params = {"start": clinic_time(start, organization.zone), "schedule": schedule.fhir_id}
    if occurrence_start:
        raise BusinessRuleViolation(
            gettext_noop(
                "No slot of occurrence '%(occurrence)s' of schedule '%(schedule)s' starts at "
                "%(start)s; search Slot?schedule=... for the slots on offer."
            ),
            expression=[field],
            params={**params, "occurrence": f"{occurrence_start:%Y%m%dT%H%M%SZ}"},
        )
    raise BusinessRuleViolation(
        gettext_noop(
            "No slot of schedule '%(schedule)s' starts at %(start)s; "
            "search Slot?schedule=... for the slots on offer."
        ),
        expression=[field],
        params=params,
    )


def _describe(busy: list[tuple[int, int]], zone: ZoneInfo) -> str:
    return ", ".join(clinic_time(s, zone, until=e) for s, e in busy[:3])


def slot_claim(
    *,
    organization: Organization,
    schedule: Schedule,
    slot: FoundSlot,
    patient: Patient,
    now: datetime,
    exclude_appointment: int | None = None,
    field: str = "start",
    claim: ClaimRead | None = None,
) -> None:
    """Refuse (SlotTaken) unless the engine says ``slot`` is free for the schedule's occupant
    and the patient has nothing else then. Call under :func:`lock_occupants` of both.
    ``claim``: what occupies them, read already (:func:`claim_read`, covering the slot)."""
    if slot.stored is not None and slot.stored.status != SlotStatus.FREE:
        raise SlotTaken(
            gettext_noop(
                "The slot at %(start)s of schedule '%(schedule)s' is %(status)s; "
                "choose another slot."
            ),
            expression=[field],
            params={
                "start": clinic_time(slot.start, organization.zone),
                "schedule": schedule.fhir_id,
                "status": slot.stored.status,
            },
        )
    rules = schedule_rules(schedule)
    start, end = int(slot.start.timestamp()), int(slot.end.timestamp())
    # The slot's own buffers are its occupant's time too.
    window = Period(
        slot.start - timedelta(seconds=rules.before), slot.end + timedelta(seconds=rules.after)
    )
    occupant = schedule.occupant
    if claim is not None:
        occupied = claim.occupancy(window)
    else:
        occupied = occupancies(
            organization=organization,
            window=window,
            now=now,
            occupants=[occupant],
            exclude_appointment=exclude_appointment,
        ).get(occupant)
    status = availability.slot_status(
        start, end, occupied, int(now.timestamp()), rules, (schedule.pk, start)
    )
    if status != availability.FREE:
        params = {"start": clinic_time(slot.start, organization.zone), "schedule": schedule.fhir_id}
        if status == availability.BUSY_TENTATIVE:
            raise SlotTaken(
                gettext_noop(
                    "The slot at %(start)s of schedule '%(schedule)s' is no longer free (held "
                    "by another patient for now): its practitioner is booked then; choose "
                    "another slot."
                ),
                expression=[field],
                params=params,
            )
        raise SlotTaken(
            gettext_noop(
                "The slot at %(start)s of schedule '%(schedule)s' is no longer free: its "
                "practitioner is booked then; choose another slot."
            ),
            expression=[field],
            params=params,
        )
    own = (
        claim.patient_occupancy(Period(slot.start, slot.end))
        if claim is not None
        else patient_occupancy(
            organization=organization,
            patient_pk=patient.pk,
            window=Period(slot.start, slot.end),
            now=now,
            exclude_appointment=exclude_appointment,
        )
    )
    if own.status(start, end) != availability.FREE:
        raise SlotTaken(
            gettext_noop(
                "The patient already has an appointment at that time (%(times)s); "
                "choose another slot."
            ),
            expression=[field],
            params={"times": _describe(own.busy, organization.zone)},
        )


def expire_lapsed_holds(
    *,
    organization: Organization,
    now: datetime,
    actor: str,
    occupant: str | None = None,
    patient: Patient | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    occupants: Collection[str] = (),
    patients: Collection[int] = (),
) -> int:
    """Mark holds that lapsed by ``now`` as cancelled ("hold expired"), with an AuditEvent
    each; narrowed to an occupant or patient and a time range when given.

    Reads already treat a lapsed hold as cancelled; this makes the rows say so, and a
    booking runs it for the time it takes so the database constraints, which cannot see the
    clock, do not count a lapsed hold. Returns how many it tidied.
    """
    lapsed = Appointment.objects.filter(lapsed_holds_q(now), organization=organization)
    who = Q()
    if occupant is not None:
        who |= Q(occupant=occupant)
    if patient is not None:
        who |= Q(patient=patient)
    if occupants:
        who |= Q(occupant__in=sorted(set(occupants)))
    if patients:
        who |= Q(patient_id__in=sorted(set(patients)))
    if who:
        lapsed = lapsed.filter(who)
    if start is not None and end is not None:
        # Widened by the longest buffer: a lapsed hold's buffers still count for the
        # occupant exclusion constraint (occupied ranges), and tidying a lapsed hold a little
        # further away changes nothing anyone can see.
        reach = timedelta(minutes=MAX_BUFFER_MINUTES)
        lapsed = lapsed.filter(start__lt=end + reach, end__gt=start - reach)
    count = 0
    for hold in lapsed.select_for_update():
        hold.status = AppointmentStatus.CANCELLED
        hold.cancelation_reason = HOLD_EXPIRED
        hold.save(update_fields=["status", "cancelation_reason", "updated_at"])
        audit(
            organization=organization,
            actor=actor,
            action=AuditEvent.Action.HOLD_EXPIRED,
            appointment=hold,
            detail={"heldUntil": iso(hold.held_until) if hold.held_until else None},
        )
        count += 1
    return count


def integrity_conflict(exc: IntegrityError) -> bool:
    """Whether ``exc`` says the time is taken (an overlap or occupant constraint).

    PostgreSQL names the constraint; SQLite names the unique index's columns
    ('UNIQUE constraint failed: scheduling_appointment.organization_id, ...occupant...').
    """
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return name in _OVERLAP_CONSTRAINTS
    text = str(exc)
    return any(c in text for c in _OVERLAP_CONSTRAINTS) or (
        "UNIQUE constraint failed" in text and "scheduling_appointment.occupant" in text
    )


#: How far ahead a recurring appointment's occurrences are checked for clashes when it is
#: stored as given (import, staff edits): a year, as far as any search window reaches.
CLASH_HORIZON = timedelta(days=365)


def _spans_of(organization: Organization, appointment: Appointment) -> list[tuple[int, int]]:
    if not appointment.rrule:
        return [(int(appointment.start.timestamp()), int(appointment.end.timestamp()))]
    periods = recurrence.expand(
        rrule=appointment.rrule,
        first_start=appointment.start,
        first_end=appointment.end,
        tzid=appointment.rule_timezone(organization),
        exdates=appointment.exdate_values(),
        window_start=appointment.start,
        window_end=appointment.start + CLASH_HORIZON,
    )
    return [(int(p.start.timestamp()), int(p.end.timestamp())) for p in periods]


def appointment_clashes(
    *, organization: Organization, appointment: Appointment, now: datetime
) -> list[Text]:
    """What ``appointment`` (saved or not, with its occupant and patient set) would overlap:
    other active appointments of its occupant or of its patient, each named, as the engine
    sees them (blocked time does not count: a block never hides a booking). Empty if none.
    :class:`ClashCheck` for one appointment, so one store and an import decide alike.
    """
    return ClashCheck(
        organization=organization,
        appointments=[appointment],
        now=now,
        exclude=[appointment.pk] if appointment.pk is not None else (),
    ).check(appointment)


@dataclass(slots=True)
class _Line:
    """What occupies one occupant (or patient), unmerged, ordered by start: stored spans
    and those of the appointments accepted so far, each with its name when known."""

    starts: list[int] = field(default_factory=list)
    items: list[tuple[int, int, str, tuple[int, int] | None, Occupant | None]] = field(
        default_factory=list
    )
    longest: int = 0

    def add(
        self,
        start: int,
        end: int,
        kind: str,
        seat: tuple[int, int] | None = None,
        named: Occupant | None = None,
    ) -> None:
        at = bisect_right(self.starts, start)
        self.starts.insert(at, start)
        self.items.insert(at, (start, end, kind, seat, named))
        self.longest = max(self.longest, end - start)

    def near(
        self, lo: int, hi: int
    ) -> list[tuple[int, int, str, tuple[int, int] | None, Occupant | None]]:
        first = bisect_left(self.starts, lo - self.longest)
        last = bisect_left(self.starts, hi)
        return [item for item in self.items[first:last] if item[1] > lo]

    def occupancy(self, lo: int, hi: int) -> availability.Occupancy:
        """The engine's view of what occupies this line around ``[lo, hi)``."""
        busy: list[tuple[int, int]] = []
        tentative: list[tuple[int, int]] = []
        seats: list[availability.Seat] = []
        for s, e, kind, seat, _named in self.near(lo, hi):
            if seat is not None:
                seats.append((s, e, seat))
            elif kind == "tentative":
                tentative.append((s, e))
            else:
                busy.append((s, e))
        return availability.Occupancy.of(busy, tentative, seats)


class ClashCheck:
    """What appointments would overlap, for many at once (an import): what occupies
    their occupants and patients is read once for the whole span, then each appointment,
    in the order given, is checked in memory by the engine against the stored rows and the
    appointments accepted before it, and added. Same rules and messages as
    :func:`appointment_clashes`; call under :func:`lock_occupants` of every occupant and
    patient involved. ``exclude`` (pks) are stored rows the new versions replace."""

    def __init__(
        self,
        *,
        organization: Organization,
        appointments: Sequence[Appointment],
        now: datetime,
        exclude: Collection[int] = (),
    ) -> None:
        self.organization = organization
        self.now = now
        self.exclude = sorted(set(exclude))
        self._spans = {id(a): self._live_spans(a) for a in appointments}
        every = [span for spans in self._spans.values() for span in spans]
        self._occupants: dict[str, _Line] = {}
        self._patients: dict[str, _Line] = {}
        if not every:
            return
        reach = timedelta(minutes=MAX_BUFFER_MINUTES)
        window = Period(
            datetime.fromtimestamp(min(s for s, _ in every), UTC) - reach,
            datetime.fromtimestamp(max(e for _, e in every), UTC) + reach,
        )
        live = [a for a in appointments if self._spans[id(a)]]
        by_occupant, by_patient = occupancy_spans(
            organization=organization,
            window=window,
            now=now,
            occupants={a.occupant for a in live if a.occupant},
            patients={a.patient_id for a in live if a.patient_id is not None},
            exclude_appointments=self.exclude,
        )
        for lines, stored in ((self._occupants, by_occupant), (self._patients, by_patient)):
            for key, (busy, tentative, seats) in stored.items():
                line = lines.setdefault(key, _Line())
                for s, e in busy:
                    line.add(s, e, "busy")
                for s, e in tentative:
                    line.add(s, e, "tentative")
                for s, e, seat in seats:
                    line.add(s, e, "seat", seat)

    def _live_spans(self, appointment: Appointment) -> list[tuple[int, int]]:
        if not appointment.is_active or appointment.hold_lapsed(self.now):
            return []
        return _spans_of(self.organization, appointment)

    def check(self, appointment: Appointment) -> list[Text]:
        """What ``appointment`` would overlap (named), empty if nothing; when empty it is
        added, so the appointments after it see it."""
        spans = self._spans.get(id(appointment)) or []
        if not spans:
            return []
        schedule = appointment.schedule
        rules = schedule_rules(schedule) if schedule is not None else availability.NO_RULES
        group = schedule.pk if schedule is not None else 0
        occupant = appointment.occupant
        patient = str(appointment.patient_id)
        clashes: list[Text] = []
        if occupant and occupant in self._occupants:
            line = self._occupants[occupant]
            hit = [
                (s, e)
                for s, e in spans
                if line.occupancy(s - rules.before, e + rules.after).status(s, e, rules, (group, s))
                != availability.FREE
            ]
            clashes += self._named(
                gettext_noop("the practitioner already has %(names)s at %(time)s"),
                hit,
                line,
                occupant=occupant,
            )
        if patient in self._patients:
            line = self._patients[patient]
            own = [
                (s, e) for s, e in spans if line.occupancy(s, e).status(s, e) != availability.FREE
            ]
            clashes += self._named(
                gettext_noop("the patient already has %(names)s at %(time)s"),
                own,
                line,
                patient_pk=appointment.patient_id,
            )
        if not clashes:
            self._add(appointment, spans)
        return clashes

    def _add(self, appointment: Appointment, spans: list[tuple[int, int]]) -> None:
        # The same shapes the occupancy loader makes of a stored row.
        before = int(
            (appointment.start - (appointment.occupied_start or appointment.start)).total_seconds()
        )
        after = int(
            ((appointment.occupied_end or appointment.end) - appointment.end).total_seconds()
        )
        schedule = appointment.schedule
        group = schedule.pk if schedule is not None and schedule.seats > 1 else None
        kind = "tentative" if appointment.is_held else "busy"
        occupant = appointment.occupant
        patient = self._patients.setdefault(str(appointment.patient_id), _Line())
        line = self._occupants.setdefault(occupant, _Line()) if occupant else None
        for s, e in spans:
            named = self._label(appointment, s, e)
            if line is not None:
                if group is not None:
                    line.add(s - before, e + after, "seat", (group, s), named)
                else:
                    line.add(s - before, e + after, kind, None, named)
            patient.add(s, e, kind, None, named)

    def _label(self, appointment: Appointment, s: int, e: int) -> Occupant:
        if not appointment.rrule:
            return Occupant(f"Appointment/{appointment.fhir_id}", s, e)
        occurrence = recurrence.occurrence_id(appointment.fhir_id, datetime.fromtimestamp(s, UTC))
        return Occupant(
            f"Appointment/{occurrence} (an occurrence of Appointment/{appointment.fhir_id})", s, e
        )

    def _named(
        self,
        template: str,
        hit: list[tuple[int, int]],
        line: _Line,
        *,
        occupant: str | None = None,
        patient_pk: int | None = None,
    ) -> list[Text]:
        clashes = []
        for s, e in hit[:3]:
            found = occupying_appointments(
                organization=self.organization,
                window=Period(datetime.fromtimestamp(s, UTC), datetime.fromtimestamp(e, UTC)),
                now=self.now,
                occupant=occupant,
                patient_pk=patient_pk,
                exclude_appointments=self.exclude,
            )
            found += [item[4] for item in line.near(s, e) if item[4] is not None]
            names = list(
                dict.fromkeys(
                    o.label
                    for o in sorted(found, key=lambda o: (o.start, o.label))
                    if o.start < e and s < o.end
                )
            )
            clashes.append(
                Text(
                    template,
                    {
                        "names": ", ".join(names) or Text(gettext_noop("an appointment")),
                        "time": clinic_time(s, self.organization.zone),
                    },
                )
            )
        return clashes


def rules_check(
    *,
    organization: Organization,
    schedule: Schedule,
    slot: FoundSlot,
    patient: Patient,
    now: datetime,
    exclude_appointment: int | None = None,
    field: str = "start",
) -> None:
    """The schedule's booking rules for a patient taking ``slot`` at ``now``: the clock rules
    (the same decision Slot search makes, ``availability.rule_refusal``) and the cap on a
    patient's upcoming bookings. BusinessRuleViolation naming the rule."""
    rules = schedule_rules(schedule)
    refusal = availability.rule_refusal(int(slot.start.timestamp()), int(now.timestamp()), rules)
    if refusal == availability.STARTED:
        raise BusinessRuleViolation(
            gettext_noop("The slot at %(start)s has already started; choose a future slot."),
            expression=[field],
            params={"start": clinic_time(slot.start, organization.zone)},
        )
    if refusal == availability.NOTICE:
        raise BusinessRuleViolation(
            gettext_noop(
                "Schedule '%(schedule)s' takes bookings at least %(minutes)s minutes ahead "
                "(minimumNotice); the slot at %(start)s starts too soon."
            ),
            expression=[field],
            params={
                "schedule": schedule.fhir_id,
                "minutes": schedule.minimum_notice_minutes,
                "start": clinic_time(slot.start, organization.zone),
            },
        )
    if refusal == availability.ADVANCE:
        raise BusinessRuleViolation(
            gettext_noop(
                "Schedule '%(schedule)s' takes bookings at most %(days)s days ahead "
                "(maximumAdvance); the slot at %(start)s is further out."
            ),
            expression=[field],
            params={
                "schedule": schedule.fhir_id,
                "days": schedule.maximum_advance_days,
                "start": clinic_time(slot.start, organization.zone),
            },
        )
    cap = schedule.max_active_per_patient
    if cap is not None:
        upcoming = (
            Appointment.objects.filter(
                organization=organization, schedule=schedule, patient=patient, end__gt=now
            )
            .filter(active_appointments_q(now))
            .exclude(pk=exclude_appointment or 0)
            .count()
        )
        if upcoming >= cap:
            raise BusinessRuleViolation(
                gettext_noop(
                    "Schedule '%(schedule)s' allows at most %(cap)s upcoming booking(s) per "
                    "patient (maxActivePerPatient), and this patient has %(upcoming)s."
                ),
                expression=[field],
                params={"schedule": schedule.fhir_id, "cap": cap, "upcoming": upcoming},
            )


def seat_for(
    *, organization: Organization, schedule: Schedule, slot: FoundSlot, now: datetime
) -> int:
    """The seat a new booking of a group slot takes: the lowest one free. With the occupant
    exclusion constraint (no two overlapping bookings of one occupant in one seat) this is
    what keeps a slot from ever holding more than ``capacity`` bookings, however many
    writers race: seats run from 0 to capacity - 1. Call under the occupant's lock."""
    if schedule.seats <= 1:
        return 0
    taken = set(
        Appointment.objects.filter(
            organization=organization, schedule=schedule, start=slot.start, rrule=""
        )
        .filter(active_appointments_q(now))
        .values_list("seat", flat=True)
    )
    return min(set(range(schedule.seats)) - taken)


def cancellation_cutoff_check(
    *,
    appointment: Appointment,
    now: datetime,
    action: str,
    field: str,
    occurrence: tuple[str, datetime] | None = None,
) -> None:
    """``$cancel``, ``$reschedule`` and a declining AppointmentResponse of an appointment
    starting sooner than its schedule's cancellation cutoff are refused (staff in the admin
    are not held to it). BusinessRuleViolation naming the rule. ``occurrence``: (id, start)
    of the one occurrence of a recurring appointment that is meant."""
    schedule = appointment.schedule
    hours = schedule.cancellation_cutoff_hours if schedule is not None else None
    fhir_id, start = occurrence or (appointment.fhir_id, appointment.start)
    if hours is not None and start < now + timedelta(hours=hours):
        raise BusinessRuleViolation(
            _CUTOFF_MESSAGES[action],
            expression=[field],
            params={
                "appointment": fhir_id,
                "hours": hours,
                "schedule": schedule.fhir_id if schedule else "",
            },
        )


# One whole sentence per action, so a translation can conjugate the verb.
_CUTOFF_MESSAGES = {
    "cancel": gettext_noop(
        "Appointment '%(appointment)s' starts within %(hours)s hours; schedule "
        "'%(schedule)s' does not let patients cancel it this late (cancellationCutoff). "
        "Call the clinic."
    ),
    "move": gettext_noop(
        "Appointment '%(appointment)s' starts within %(hours)s hours; schedule "
        "'%(schedule)s' does not let patients move it this late (cancellationCutoff). "
        "Call the clinic."
    ),
    "decline": gettext_noop(
        "Appointment '%(appointment)s' starts within %(hours)s hours; schedule "
        "'%(schedule)s' does not let patients decline it this late (cancellationCutoff). "
        "Call the clinic."
    ),
}


def slot_take(
    *,
    organization: Organization,
    schedule: Schedule,
    start: datetime,
    patient: Patient,
    now: datetime,
    actor: str,
    occurrence_start: datetime | None = None,
    exclude_appointment: int | None = None,
    field: str = "start",
) -> FoundSlot:
    """Everything a booking or a move asks before it writes, in order: the slot
    (:func:`slot_find`), the booking rules (:func:`rules_check`: 422), the engine's verdict for
    the occupant and the patient (:func:`slot_claim`: 409), then lapsed holds in the way are
    tidied (the database constraints cannot see the clock). Call under
    :func:`lock_occupants` of the occupant and the patient.

    What these steps read comes from one statement (:func:`claim_read`): the stored slot,
    what occupies the occupant and the patient, whether lapsed holds are near. It is read
    for a slot as long as the schedule's slots (at least :data:`CLAIM_SPAN`); a longer
    stored slot is read again by the steps themselves, and lapsed holds are tidied (a
    locked read and a write each) only when there are any.
    """
    rules = schedule_rules(schedule)
    claim = claim_read(
        organization=organization,
        occupant=schedule.occupant,
        patient_pk=patient.pk,
        schedule_pk=schedule.pk,
        start=start,
        reach=start + max(schedule.slot_duration or CLAIM_SPAN, CLAIM_SPAN),
        before=timedelta(seconds=rules.before),
        after=timedelta(seconds=rules.after),
        now=now,
        exclude_appointment=exclude_appointment,
    )
    slot = slot_find(
        organization=organization,
        schedule=schedule,
        start=start,
        occurrence_start=occurrence_start,
        field=field,
        claim=claim,
    )
    rules_check(
        organization=organization,
        schedule=schedule,
        slot=slot,
        patient=patient,
        now=now,
        exclude_appointment=exclude_appointment,
        field=field,
    )
    covered = claim.covers(slot.start, slot.end)
    slot_claim(
        organization=organization,
        schedule=schedule,
        slot=slot,
        patient=patient,
        now=now,
        exclude_appointment=exclude_appointment,
        field=field,
        claim=claim if covered else None,
    )
    if not covered or claim.lapsed_holds():
        expire_lapsed_holds(
            organization=organization,
            now=now,
            actor=actor,
            occupant=schedule.occupant,
            patient=patient,
            start=slot.start,
            end=slot.end,
        )
    return slot
