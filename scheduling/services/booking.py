"""Booking and moving: ``$book-slot`` (and holds), ``$reschedule``.

HackSoft style: keyword-only arguments, ``organization`` always required, domain errors
only (``scheduling.errors``; ``fhir_api.errors`` turns them into OperationOutcomes).

Never a double booking of a person, decided by the one engine and guaranteed by the
database: each write runs in one transaction that locks the occupant (the practitioner,
across all their schedules) and the patient, asks the engine whether the slot is free
(``scheduling.services.claims``), and inserts; the PostgreSQL exclusion constraints refuse
an overlap even if the check were skipped, and their IntegrityError becomes SlotTaken.
Every state change writes its AuditEvent in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, QuerySet, Value, When

from scheduling import recurrence
from scheduling.db import search_cache
from scheduling.db.compiled_query import CompiledStatement
from scheduling.errors import BusinessRuleViolation, InvalidInput, SlotTaken, gettext_noop
from scheduling.models import (
    BOOKABLE_STATUSES,
    Appointment,
    AppointmentStatus,
    AuditEvent,
    IdempotencyKey,
    Organization,
    ParticipationStatus,
    Patient,
    Schedule,
    Slot,
)
from scheduling.selectors.common import utc_now
from scheduling.selectors.occupancy import active_appointments_q, schedule_rules
from scheduling.services.claims import (
    cancellation_cutoff_check,
    integrity_conflict,
    lock_occupants,
    patient_lock_key,
    seat_for,
    slot_take,
)
from scheduling.services.common import audit, clinic_time, iso, new_fhir_id

__all__ = [
    "BookingResult",
    "appointment_book",
    "appointment_reschedule",
]

# Domain field names; the API turns them into FHIR paths (``fhir_api`` views' field_path).
_START = "start"
_BOOKED_MEANWHILE = gettext_noop(
    "This time was booked by someone else meanwhile; choose another slot."
)
_SCHEDULE = "schedule"
_ROLE = "practitionerRole"
_STATUS = "status"
_IDEMPOTENCY = "Idempotency-Key"

_KEY_CONSTRAINT = "uniq_idempotency_key"


@dataclass(frozen=True, slots=True)
class BookingResult:
    appointment: Appointment
    created: bool  # False when an Idempotency-Key replayed an earlier booking


# --------------------------------------------------------------------------- booking


def appointment_book(
    *,
    organization: Organization,
    patient: Patient,
    schedule_id: str,
    start: datetime,
    practitioner_role_id: str,
    status: str,
    comment: str,
    actor: str,
    idempotency_key: str | None = None,
    held_until: datetime | None = None,
    hold_duration: timedelta | None = None,
    now: datetime | None = None,
) -> BookingResult:
    """Book the slot of ``schedule_id`` that starts exactly at ``start`` for ``patient``.

    ``schedule_id`` is a stored schedule's id or a generated occurrence id of one. With
    ``held_until`` (status ``pending``) the booking is a hold that lapses by itself then.
    Raises BusinessRuleViolation (no such schedule/slot, wrong actor, past slot, status not
    bookable, key reused with another request) or SlotTaken (the practitioner or the patient
    is no longer free then). With ``idempotency_key``, repeating an earlier successful
    request of the same client and patient returns that appointment with ``created=False``
    and writes nothing; the same key with a different request (another slot, status,
    comment, hold or hold length) is BusinessRuleViolation. ``now`` is the clock (tests
    pass one; default: the real time).
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise InvalidInput(gettext_noop("start needs a timezone offset."), expression=[_START])
    start = start.astimezone(UTC)
    now = now or utc_now()
    # Only a request with an Idempotency-Key is ever compared with an earlier one: one
    # without (every booking of a race for one slot, in the benchmark) hashes nothing.
    request_hash = (
        _request_hash(
            schedule_id,
            iso(start),
            practitioner_role_id,
            status,
            comment or "",
            # A hold's length is part of the request: a key reused for a hold of another
            # length is a different request (422), not a replay of the first hold.
            *(
                ["hold", f"{hold_duration.total_seconds():g}" if hold_duration else ""]
                if held_until is not None
                else []
            ),
        )
        if idempotency_key is not None
        else ""
    )

    def earlier_booking() -> BookingResult | None:
        """The earlier booking this request repeats (same client, patient and key)."""
        if idempotency_key is None:
            return None
        earlier = _replay(
            organization=organization,
            patient=patient,
            actor=actor,
            key=idempotency_key,
            request_hash=request_hash,
        )
        return None if earlier is None else BookingResult(earlier, created=False)

    # Cheap check without any lock: most retries end here.
    if (result := earlier_booking()) is not None:
        return result

    try:
        early = _refuse_early(
            organization=organization,
            schedule_id=schedule_id,
            start=start,
            practitioner_role_id=practitioner_role_id,
            status=status,
            now=now,
        )
    except SlotTaken:
        # The slot may be taken by a concurrent repeat of this very request.
        if (result := earlier_booking()) is not None:
            return result
        raise
    try:
        with transaction.atomic():
            booked = _book_locked(
                organization=organization,
                patient=patient,
                schedule_id=schedule_id,
                start=start,
                practitioner_role_id=practitioner_role_id,
                status=status,
                comment=comment,
                actor=actor,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                held_until=held_until,
                now=now,
                loaded=early,
            )
            if isinstance(booked, SlotTaken):
                _commit_lock_only()
        if isinstance(booked, SlotTaken):
            raise booked
        appointment = booked
    except _Replayed as replayed:
        return BookingResult(replayed.appointment, created=False)
    except IntegrityError as exc:
        # A concurrent repeat of the same key won; its booking is the answer.
        if (
            _violates(exc, _KEY_CONSTRAINT, "scheduling_idempotencykey.key")
            and (result := earlier_booking()) is not None
        ):
            return result
        if integrity_conflict(exc):
            raise SlotTaken(_BOOKED_MEANWHILE, expression=[_START]) from None
        raise
    return BookingResult(appointment, created=True)


def _commit_lock_only() -> None:
    """Let the transaction of a request refused by the plain check under the lock end in
    COMMIT rather than ROLLBACK, without waiting for the disk.

    psycopg forgets every prepared statement of its connection at a ROLLBACK (and has the
    server DEALLOCATE ALL), so after each loser refused under the lock the next requests on
    that connection parsed and planned their statements afresh (the token query, the
    early check, ...) until prepared again. That transaction wrote nothing but its locks
    (the lock rows, created when missing, as every booking leaves them), so committing it
    changes nothing anyone reads; and nothing of it needs to survive a crash, so its
    commit need not wait for the WAL flush while still holding the occupant's lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO off")


class _Replayed(Exception):  # control flow: an earlier booking answers this request
    def __init__(self, appointment: Appointment) -> None:
        super().__init__(appointment.fhir_id)
        self.appointment = appointment


def _check_rules(*, schedule: Schedule, practitioner_role_id: str, status: str | None) -> None:
    """The business rules that need only the schedule row (BusinessRuleViolation)."""
    if status is not None and status not in BOOKABLE_STATUSES:
        allowed = ", ".join(str(s) for s in BOOKABLE_STATUSES)
        raise BusinessRuleViolation(
            gettext_noop("status '%(status)s' cannot be booked; use one of: %(allowed)s."),
            expression=[_STATUS],
            params={"status": status, "allowed": allowed},
        )
    if not schedule.active:
        raise BusinessRuleViolation(
            gettext_noop("Schedule '%(schedule)s' is not active: it takes no bookings."),
            expression=[_SCHEDULE],
            params={"schedule": schedule.fhir_id},
        )
    role = schedule.practitioner_role
    if role is None or role.fhir_id != practitioner_role_id:
        raise BusinessRuleViolation(
            gettext_noop(
                "PractitionerRole '%(role)s' is not the actor of schedule '%(schedule)s'."
            ),
            expression=[_ROLE],
            params={"role": practitioner_role_id, "schedule": schedule.fhir_id},
        )


def _schedules() -> QuerySet[Schedule]:
    return Schedule.objects.select_related("practitioner_role")


@dataclass(frozen=True, slots=True)
class _Early:
    """What :func:`_refuse_early` read, for the locked part: the schedule (and the
    occurrence start), and whether the plain check applied (``plain``): then the locked
    part asks it again first, once it holds the lock."""

    schedule: Schedule
    occurrence_start: datetime | None
    plain: bool


def _refuse_early(
    *,
    organization: Organization,
    schedule_id: str,
    start: datetime,
    practitioner_role_id: str,
    status: str,
    now: datetime,
) -> _Early | None:
    """Answer a request for a time that is plainly taken before queueing for the lock.

    Under contention every loser would otherwise wait for the occupant's lock just to find
    the winner's row. Only the unambiguous case answers here: a future start at which an
    active appointment of the same occupant starts exactly. Everything else, and every
    request that gets past this unlocked read, is decided under the lock by the engine, so
    error precedence is unchanged: the rules that need only the schedule are checked
    first, and a past start still gets its 422.

    Returns the schedule it read (and the occurrence start), which the locked part uses
    rather than reading it again: nothing locks a schedule, so a second read would be no
    fresher in any way that matters (the occupant's lock guards the time, not the row).
    """
    if start < now:
        return None
    schedule, occurrence_start = _schedule_cached(organization=organization, value=schedule_id)
    _check_rules(schedule=schedule, practitioner_role_id=practitioner_role_id, status=status)
    if schedule.seats > 1 or schedule_rules(schedule).clocked:
        # A group slot takes several bookings; a clock rule's 422 comes first.
        return _Early(schedule, occurrence_start, plain=False)
    if _TAKEN_AT.rows(organization.pk, schedule.occupant, start, now):
        raise _plainly_taken(organization=organization, schedule=schedule, start=start)
    return _Early(schedule, occurrence_start, plain=True)


def _plainly_taken(*, organization: Organization, schedule: Schedule, start: datetime) -> SlotTaken:
    # The engine's own words for a slot its occupant is booked in (claims.slot_claim).
    return SlotTaken(
        gettext_noop(
            "The slot at %(start)s of schedule '%(schedule)s' is no longer free: its "
            "practitioner is booked then; choose another slot."
        ),
        expression=[_START],
        params={"start": clinic_time(start, organization.zone), "schedule": schedule.fhir_id},
    )


def _book_locked(
    *,
    organization: Organization,
    patient: Patient,
    schedule_id: str,
    start: datetime,
    practitioner_role_id: str,
    status: str,
    comment: str,
    actor: str,
    idempotency_key: str | None,
    request_hash: str,
    held_until: datetime | None,
    now: datetime,
    loaded: _Early | None = None,
) -> Appointment | SlotTaken:
    """Book under the occupant's and the patient's locks; the caller's transaction. A
    request refused by the plain check under the lock gets its SlotTaken returned, not
    raised, for the caller to raise after the transaction ends (:func:`_commit_lock_only`);
    every other refusal is raised (and rolls back)."""
    if loaded is not None:
        schedule, occurrence_start = loaded.schedule, loaded.occurrence_start
    else:
        schedule, occurrence_start = _schedule_named(
            _schedules(), organization=organization, value=schedule_id
        )
    occupant = schedule.occupant
    keys = {occupant, patient_lock_key(patient)}
    # Requests racing for one slot all pass the early check before the first of them
    # commits, then queue for the occupant's lock; each holds it in turn while it is
    # checked. So the first question under the lock is the cheapest correct one, asked in
    # the lock's own round trip: does an appointment of the occupant (no hold) start
    # exactly then? The locked check would refuse such a slot for the same reason with the
    # same words, after a statement several times dearer and the engine's Python. Not for
    # a schedule with a cap per patient (its 422 comes before a 409 under the lock).
    taken_check = loaded is not None and loaded.plain and schedule.max_active_per_patient is None
    taken = lock_occupants(
        organization=organization,
        keys=keys,
        then=(
            (_TAKEN_UNDER_LOCK, (organization.pk, occupant, schedule.pk, start, now))
            if taken_check
            else None
        ),
    )
    if idempotency_key is not None:
        # Again under the lock: a concurrent repeat of this key may have committed meanwhile.
        replay = _replay(
            organization=organization,
            patient=patient,
            actor=actor,
            key=idempotency_key,
            request_hash=request_hash,
        )
        if replay is not None:
            raise _Replayed(replay)

    _check_rules(schedule=schedule, practitioner_role_id=practitioner_role_id, status=status)
    if _booked_at(taken):
        return _plainly_taken(organization=organization, schedule=schedule, start=start)
    role = schedule.practitioner_role
    assert role is not None
    slot = slot_take(
        organization=organization,
        schedule=schedule,
        start=start,
        occurrence_start=occurrence_start,
        patient=patient,
        now=now,
        actor=actor,
        field=_START,
    )

    appointment = Appointment(
        organization=organization,
        fhir_id=new_fhir_id(),
        patient=patient,
        status=status,
        start=slot.start,
        end=slot.end,
        schedule=schedule,
        practitioner_role=role,
        slot=slot.stored,
        occupant=occupant,
        seat=seat_for(organization=organization, schedule=schedule, slot=slot, now=now),
        held_until=held_until,
        patient_status=ParticipationStatus.ACCEPTED,
        practitioner_status=(
            ParticipationStatus.ACCEPTED
            if status == AppointmentStatus.BOOKED
            else ParticipationStatus.NEEDS_ACTION
        ),
        service_category=list(schedule.service_category or []),
        comment=comment or "",
    )
    _insert_loaded(appointment)
    if idempotency_key is not None:
        IdempotencyKey.objects.create(
            organization=organization,
            client_id=actor,
            patient=patient,
            key=idempotency_key,
            appointment=appointment,
            request_hash=request_hash,
        )
    audit(
        organization=organization,
        actor=actor,
        action=AuditEvent.Action.HELD if held_until is not None else AuditEvent.Action.CREATED,
        appointment=appointment,
        detail={
            "status": status,
            "start": iso(slot.start),
            "end": iso(slot.end),
            "schedule": schedule.fhir_id,
            "practitionerRole": role.fhir_id,
            "patient": patient.fhir_id,
            "slot": slot.stored.fhir_id if slot.stored else None,
            "idempotencyKey": idempotency_key,
            **({"heldUntil": iso(held_until)} if held_until is not None else {}),
        },
    )
    return appointment


def _starting_then(
    organization_id: str, occupant: str, start: datetime, now: datetime
) -> QuerySet[Appointment]:
    """The occupant's active plain appointments starting exactly at ``start``: the one
    question of both cheap refusals (before the lock and first under it). Such an
    appointment always overlaps the slot starting then (an appointment ends after it
    starts: ``appointment_end_after_start``), so the engine would find the slot busy too."""
    return (
        Appointment.objects.filter(
            organization_id=organization_id, occupant=occupant, start=start, rrule=""
        )
        .exclude(occupant="")
        .filter(active_appointments_q(now))
        .order_by()
    )


#: The early check of :func:`_refuse_early` (organisation, occupant, start, now).
#: Compiled once per process.
_TAKEN_AT = CompiledStatement(
    lambda organization_id, occupant, start, now: [
        _starting_then(organization_id, occupant, start, now).values_list("id")[:1]
    ],
    kinds="ssdd",
)


#: The first check under the occupant's lock (:func:`_book_locked`), as rows ``(part,
#: hold)``: ``a`` an active plain appointment of the occupant starting exactly then (``hold``
#: 1 for a live hold), ``s`` a stored slot of the schedule at that start. Arguments:
#: organisation, occupant, schedule, start, now. Compiled once per process.
_TAKEN_UNDER_LOCK = CompiledStatement(
    lambda organization_id, occupant, schedule_pk, start, now: [
        _starting_then(organization_id, occupant, start, now).values_list(
            Value("a"),
            Case(
                When(status=AppointmentStatus.PENDING, held_until__isnull=False, then=Value(1)),
                default=Value(0),
            ),
        ),
        Slot.objects.filter(organization_id=organization_id, schedule_id=schedule_pk, start=start)
        .order_by()
        .values_list(Value("s"), Value(0)),
    ],
    kinds="ssidd",
)


def _booked_at(rows: list[tuple[Any, ...]]) -> bool:
    """Whether :data:`_TAKEN_UNDER_LOCK`'s rows say the slot is booked by the occupant's
    appointment starting then, in exactly the terms the locked check would refuse it.

    A live hold there is refused by the engine with words of its own ("held by another
    patient for now"), and a stored slot at that start may be refused for its own status
    (or be a 422, entered in error): both are left to the locked check."""
    parts = {(part, hold) for part, hold in rows}
    return ("a", 0) in parts and not any(part == "s" for part, _ in parts)


def _schedule_cached(*, organization: Organization, value: str) -> tuple[Schedule, datetime | None]:
    """:func:`_schedule_named`, kept per process under the organisation's ``schedules``
    stamp when the request's organisation carries it (the API's does): a booking then
    reads no schedule while none of the organisation's practitioners, roles and schedules
    changed. As fresh as the stamp, read with the request's token; the occupant's lock,
    not the schedule row, guards the time (see :func:`_refuse_early`). The instance is
    shared between requests and threads: nothing here changes it."""

    def build() -> tuple[tuple[Schedule, datetime | None], int]:
        return _schedule_named(_schedules(), organization=organization, value=value), 1

    if getattr(organization, "schedules_stamp", None) is None:
        return build()[0]
    return search_cache.booking_schedule_cache.get_or_build(
        organization, ("booking-schedule", value), build, bookings=False
    )


def _schedule_named(
    queryset: QuerySet[Schedule], *, organization: Organization, value: str
) -> tuple[Schedule, datetime | None]:
    """The stored schedule named by ``value``, and the occurrence start if ``value`` was a
    generated occurrence id; BusinessRuleViolation when there is none."""
    schedule = queryset.filter(organization=organization, fhir_id=value).first()
    if schedule is not None:
        return schedule, None
    parsed = recurrence.split_occurrence_id(value)
    if parsed is not None:
        parent_id, occurrence_start = parsed
        schedule = queryset.filter(organization=organization, fhir_id=parent_id).first()
        if schedule is not None and schedule.is_recurring:
            return schedule, occurrence_start
    raise BusinessRuleViolation(
        gettext_noop("Schedule '%(schedule)s' does not exist."),
        expression=[_SCHEDULE],
        params={"schedule": value},
    )


def _insert_loaded(appointment: Appointment) -> None:
    """Validate and insert a new appointment whose related rows the service loaded itself.

    ``TenantModel.save`` runs ``full_clean``, whose foreign-key validation re-reads the
    organisation, patient, schedule, role and slot (one query each) although this service
    has just read them, some under a lock. Here the same validation runs with those
    existence checks left out (``clean()`` still refuses rows of another organisation),
    and the row is inserted without validating twice.
    """
    appointment.full_clean(
        exclude=["organization", "patient", "schedule", "practitioner_role", "slot"],
        validate_unique=False,
        validate_constraints=False,
    )
    models.Model.save(appointment, force_insert=True)


# --------------------------------------------------------------------------- moving


def appointment_reschedule(
    *,
    organization: Organization,
    appointment: Appointment,
    start: datetime,
    actor: str,
    schedule_id: str | None = None,
    practitioner_role_id: str | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
    staff: bool = False,
) -> Appointment:
    """Move ``appointment`` (same id) to the slot starting at ``start`` of ``schedule_id``
    (default: its current schedule) in one transaction: the new time is taken and the old
    one freed together, so a move that cannot happen changes nothing (SlotTaken when the
    new slot is not free, BusinessRuleViolation when there is no such slot, the role is not
    its actor, the slot has started, a booking rule refuses it, or the appointment is not
    active). Moving within its own time works: the engine leaves the appointment itself
    out. ``staff`` moves are not held to the schedule's cancellation cutoff.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise InvalidInput(gettext_noop("start needs a timezone offset."), expression=[_START])
    start = start.astimezone(UTC)
    now = now or utc_now()
    request_hash = _request_hash(
        "reschedule",
        appointment.fhir_id,
        iso(start),
        schedule_id or "",
        practitioner_role_id or "",
    )
    patient = appointment.patient
    if idempotency_key is not None:
        earlier = _replay(
            organization=organization,
            patient=patient,
            actor=actor,
            key=idempotency_key,
            request_hash=request_hash,
        )
        if earlier is not None:
            return earlier
    try:
        with transaction.atomic():
            return _reschedule_locked(
                organization=organization,
                appointment=appointment,
                start=start,
                actor=actor,
                schedule_id=schedule_id,
                practitioner_role_id=practitioner_role_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                now=now,
                staff=staff,
            )
    except _Replayed as replayed:
        return replayed.appointment
    except IntegrityError as exc:
        if integrity_conflict(exc):
            raise SlotTaken(_BOOKED_MEANWHILE, expression=[_START]) from None
        raise


def _reschedule_locked(
    *,
    organization: Organization,
    appointment: Appointment,
    start: datetime,
    actor: str,
    schedule_id: str | None,
    practitioner_role_id: str | None,
    idempotency_key: str | None,
    request_hash: str,
    now: datetime,
    staff: bool,
) -> Appointment:
    if schedule_id is not None:
        schedule, occurrence_start = _schedule_named(
            _schedules(), organization=organization, value=schedule_id
        )
    elif appointment.schedule_id is not None:
        schedule, occurrence_start = _schedules().get(pk=appointment.schedule_id), None
    else:
        raise BusinessRuleViolation(
            gettext_noop(
                "Appointment '%(appointment)s' has no schedule; name the schedule to move it to."
            ),
            expression=[_SCHEDULE],
            params={"appointment": appointment.fhir_id},
        )
    patient = appointment.patient
    lock_occupants(
        organization=organization,
        keys={schedule.occupant, appointment.occupant, patient_lock_key(patient)},
    )
    locked = (
        Appointment.objects.select_for_update()
        .filter(organization=organization, pk=appointment.pk)
        .first()
    )
    if locked is None:
        raise BusinessRuleViolation(
            gettext_noop("Appointment '%(appointment)s' was not found."),
            params={"appointment": appointment.fhir_id},
        )
    if idempotency_key is not None:
        replay = _replay(
            organization=organization,
            patient=patient,
            actor=actor,
            key=idempotency_key,
            request_hash=request_hash,
        )
        if replay is not None:
            raise _Replayed(replay)
    if not locked.is_active or locked.hold_lapsed(now):
        raise BusinessRuleViolation(
            gettext_noop(
                "Appointment '%(appointment)s' is cancelled (hold expired); only an active "
                "appointment can be moved."
            )
            if locked.is_active  # active but its hold lapsed
            else gettext_noop(
                "Appointment '%(appointment)s' is %(status)s; only an active appointment can "
                "be moved."
            ),
            expression=["status"],
            params={"appointment": locked.fhir_id, "status": locked.status},
        )
    if not staff:
        cancellation_cutoff_check(appointment=locked, now=now, action="move", field="start")
    if locked.is_recurring:
        raise BusinessRuleViolation(
            gettext_noop(
                "Appointment '%(appointment)s' is recurring; move its occurrences by changing "
                "the series."
            ),
            expression=["recurrence"],
            params={"appointment": locked.fhir_id},
        )
    role = schedule.practitioner_role
    role_id = practitioner_role_id or (role.fhir_id if role is not None else "")
    _check_rules(schedule=schedule, practitioner_role_id=role_id, status=None)
    assert role is not None
    slot = slot_take(
        organization=organization,
        schedule=schedule,
        start=start,
        occurrence_start=occurrence_start,
        patient=patient,
        now=now,
        actor=actor,
        exclude_appointment=locked.pk,
        field=_START,
    )
    before = {
        "start": iso(locked.start),
        "end": iso(locked.end),
        "schedule": locked.schedule.fhir_id if locked.schedule is not None else None,
    }
    locked.start, locked.end = slot.start, slot.end
    locked.schedule, locked.practitioner_role, locked.slot = schedule, role, slot.stored
    locked.occupant = schedule.occupant
    locked.seat = seat_for(organization=organization, schedule=schedule, slot=slot, now=now)
    before_buffer, after_buffer = schedule.buffers
    locked.occupied_start, locked.occupied_end = slot.start - before_buffer, slot.end + after_buffer
    locked.save(
        update_fields=[
            "start",
            "end",
            "schedule",
            "practitioner_role",
            "slot",
            "occupant",
            "seat",
            "occupied_start",
            "occupied_end",
            "updated_at",
        ]
    )
    if idempotency_key is not None:
        IdempotencyKey.objects.create(
            organization=organization,
            client_id=actor,
            patient=patient,
            key=idempotency_key,
            appointment=locked,
            request_hash=request_hash,
        )
    audit(
        organization=organization,
        actor=actor,
        action=AuditEvent.Action.RESCHEDULED,
        appointment=locked,
        detail={
            "from": before,
            "to": {"start": iso(slot.start), "end": iso(slot.end), "schedule": schedule.fhir_id},
            "idempotencyKey": idempotency_key,
        },
    )
    return locked


def _request_hash(*parts: str) -> str:
    canonical = json.dumps(list(parts), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(
    *, organization: Organization, patient: Patient, actor: str, key: str, request_hash: str
) -> Appointment | None:
    row = (
        IdempotencyKey.objects.select_related("appointment")
        .filter(organization=organization, client_id=actor, patient=patient, key=key)
        .first()
    )
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise BusinessRuleViolation(
            gettext_noop(
                "This Idempotency-Key was already used for a different booking request; "
                "use a new key for a new request."
            ),
            expression=[_IDEMPOTENCY],
        )
    return row.appointment


def _violates(exc: IntegrityError, constraint: str, column: str) -> bool:
    """Whether ``exc`` comes from ``constraint``. PostgreSQL names the constraint; SQLite
    names the index's columns ('UNIQUE constraint failed: scheduling_appointment.organization_id,
    scheduling_appointment.schedule_id, ...'), so a column only that index has identifies it."""
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return bool(name == constraint)
    text = str(exc)
    return constraint in text or ("UNIQUE constraint failed" in text and column in text)
