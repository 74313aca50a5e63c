"""Writes on bookings: book a slot, respond to an appointment, cancel, mark a no-show.

HackSoft style: keyword-only arguments, ``organization`` always required, domain errors
only (``scheduling.errors``; ``fhir_api.errors`` turns them into OperationOutcomes).

Never a double booking, guaranteed by the database rather than by the order of queries:
the partial unique constraint ``uniq_active_appointment_per_slot`` allows one active
appointment per (organization, schedule, start). The check-and-insert runs in one
transaction that first locks the schedule row (``SELECT ... FOR UPDATE`` on PostgreSQL;
SQLite runs IMMEDIATE transactions, so writers queue on the database lock), so concurrent
bookings of one schedule serialise and the loser sees the winner's row and gets SlotTaken.
Should anything slip past the lock, the constraint still raises IntegrityError, which
becomes SlotTaken too. Every state change writes its AuditEvent in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, models, transaction
from django.db.models import Exists, Q, QuerySet
from django.utils import timezone

from scheduling import recurrence
from scheduling.errors import BusinessRuleViolation, InvalidInput, SlotTaken
from scheduling.models import (
    BOOKABLE_STATUSES,
    INACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    AppointmentStatus,
    AuditEvent,
    IdempotencyKey,
    Organization,
    ParticipationStatus,
    Patient,
    Schedule,
    Slot,
    SlotStatus,
)
from scheduling.services.common import audit, iso, new_fhir_id

__all__ = [
    "BookingResult",
    "appointment_book",
]

_START = "Parameters.parameter[start]"
_SCHEDULE = "Parameters.parameter[schedule]"
_ROLE = "Parameters.parameter[practitionerRole]"
_STATUS = "Parameters.parameter[status]"
_IDEMPOTENCY = "Idempotency-Key"

_SLOT_CONSTRAINT = "uniq_active_appointment_per_slot"
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
) -> BookingResult:
    """Book the slot of ``schedule_id`` that starts exactly at ``start`` for ``patient``.

    ``schedule_id`` is a stored schedule's id or a generated occurrence id of one.
    Raises BusinessRuleViolation (no such schedule/slot, wrong actor, past slot, status not
    bookable, key reused with another request) or SlotTaken (the slot is no longer free).
    With ``idempotency_key``, repeating an earlier successful request of the same client and
    patient returns that appointment with ``created=False`` and writes nothing.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise InvalidInput("start needs a timezone offset.", expression=[_START])
    start = start.astimezone(UTC)
    request_hash = _request_hash(
        schedule_id=schedule_id,
        start=start,
        practitioner_role_id=practitioner_role_id,
        status=status,
        comment=comment,
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
        _refuse_early(
            organization=organization,
            schedule_id=schedule_id,
            start=start,
            practitioner_role_id=practitioner_role_id,
            status=status,
        )
    except SlotTaken:
        # The slot may be taken by a concurrent repeat of this very request.
        if (result := earlier_booking()) is not None:
            return result
        raise
    try:
        with transaction.atomic():
            appointment = _book_locked(
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
            )
    except _Replayed as replayed:
        return BookingResult(replayed.appointment, created=False)
    except IntegrityError as exc:
        # A concurrent repeat of the same key won; its booking is the answer.
        if (
            _violates(exc, _KEY_CONSTRAINT, "scheduling_idempotencykey.key")
            and (result := earlier_booking()) is not None
        ):
            return result
        if _violates(exc, _SLOT_CONSTRAINT, "scheduling_appointment.schedule_id"):
            raise SlotTaken(
                "This slot was booked by someone else meanwhile; choose another slot.",
                expression=[_START],
            ) from None
        raise
    return BookingResult(appointment, created=True)


class _Replayed(Exception):  # control flow: an earlier booking answers this request
    def __init__(self, appointment: Appointment) -> None:
        super().__init__(appointment.fhir_id)
        self.appointment = appointment


def _check_rules(*, schedule: Schedule, practitioner_role_id: str, status: str) -> None:
    """The business rules that need only the schedule row (BusinessRuleViolation)."""
    if status not in BOOKABLE_STATUSES:
        allowed = ", ".join(str(s) for s in BOOKABLE_STATUSES)
        raise BusinessRuleViolation(
            f"status '{status}' cannot be booked; use one of: {allowed}.", expression=[_STATUS]
        )
    if not schedule.active:
        raise BusinessRuleViolation(
            f"Schedule '{schedule.fhir_id}' is not active: it takes no bookings.",
            expression=[_SCHEDULE],
        )
    role = schedule.practitioner_role
    if role is None or role.fhir_id != practitioner_role_id:
        raise BusinessRuleViolation(
            f"PractitionerRole '{practitioner_role_id}' is not the actor of schedule "
            f"'{schedule.fhir_id}'.",
            expression=[_ROLE],
        )


def _refuse_early(
    *,
    organization: Organization,
    schedule_id: str,
    start: datetime,
    practitioner_role_id: str,
    status: str,
) -> None:
    """Answer a request for a slot that is already booked before queueing for the lock.

    Under contention every loser would otherwise wait for the schedule row lock just to
    find the winner's row. Only the unambiguous case answers here: a future start with an
    active appointment of this schedule starting exactly then (the row the unique
    constraint guards). Everything else, and every request that gets past this unlocked
    read, is decided under the lock as before, so error precedence is unchanged: the rules
    that need only the schedule are checked first, and a past start still gets its 422.
    """
    if start < timezone.now():
        return
    schedule, _ = _schedule_named(
        Schedule.objects.select_related("practitioner_role"),
        organization=organization,
        value=schedule_id,
    )
    _check_rules(schedule=schedule, practitioner_role_id=practitioner_role_id, status=status)
    booked = (
        Appointment.objects.filter(organization=organization, schedule=schedule, start=start)
        .exclude(status__in=INACTIVE_APPOINTMENT_STATUSES)
        .exists()
    )
    if booked:
        raise SlotTaken(
            f"The slot at {iso(start)} of schedule '{schedule.fhir_id}' is no longer free; "
            "choose another slot.",
            expression=[_START],
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
) -> Appointment:
    schedule, occurrence_start = _locked_schedule(organization=organization, value=schedule_id)
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

    # Again under the lock: the schedule may have changed since the early check.
    _check_rules(schedule=schedule, practitioner_role_id=practitioner_role_id, status=status)
    role = schedule.practitioner_role
    assert role is not None
    slot_start, slot_end, stored_slot = _find_slot(
        organization=organization,
        schedule=schedule,
        start=start,
        occurrence_start=occurrence_start,
    )
    if slot_start < timezone.now():
        raise BusinessRuleViolation(
            f"The slot at {iso(slot_start)} has already started; book a future slot.",
            expression=[_START],
        )
    _require_free(organization=organization, schedule=schedule, start=slot_start, end=slot_end)

    appointment = Appointment(
        organization=organization,
        fhir_id=new_fhir_id(),
        patient=patient,
        status=status,
        start=slot_start,
        end=slot_end,
        schedule=schedule,
        practitioner_role=role,
        slot=stored_slot,
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
        action=AuditEvent.Action.CREATED,
        appointment=appointment,
        detail={
            "status": status,
            "start": iso(slot_start),
            "end": iso(slot_end),
            "schedule": schedule.fhir_id,
            "practitionerRole": role.fhir_id,
            "patient": patient.fhir_id,
            "slot": stored_slot.fhir_id if stored_slot else None,
            "idempotencyKey": idempotency_key,
        },
    )
    return appointment


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
    raise BusinessRuleViolation(f"Schedule '{value}' does not exist.", expression=[_SCHEDULE])


def _locked_schedule(*, organization: Organization, value: str) -> tuple[Schedule, datetime | None]:
    """:func:`_schedule_named`, row-locked until the end of the transaction."""
    locked = Schedule.objects.select_for_update(of=("self",)).select_related("practitioner_role")
    return _schedule_named(locked, organization=organization, value=value)


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


def _find_slot(
    *,
    organization: Organization,
    schedule: Schedule,
    start: datetime,
    occurrence_start: datetime | None,
) -> tuple[datetime, datetime, Slot | None]:
    """(start, end, stored slot or None) of the slot starting exactly at ``start``."""
    stored = (
        Slot.objects.filter(organization=organization, schedule=schedule, start=start)
        .exclude(status=SlotStatus.ENTERED_IN_ERROR)
        .order_by("fhir_id")
        .first()
    )
    if stored is not None and occurrence_start is None:
        return stored.start, stored.end, stored
    duration = schedule.slot_duration
    if duration is not None:
        windows = _windows_containing(organization=organization, schedule=schedule, instant=start)
        for window_start, window_end in windows:
            if occurrence_start is not None and window_start != occurrence_start:
                continue
            # Slots are cut back to back from the window start, in UTC (exact arithmetic).
            offset = start - window_start
            if offset % duration == timedelta(0) and start + duration <= window_end:
                return start, start + duration, stored
    if stored is not None:
        return stored.start, stored.end, stored
    where = f"occurrence '{occurrence_start:%Y%m%dT%H%M%SZ}' of " if occurrence_start else ""
    raise BusinessRuleViolation(
        f"No slot of {where}schedule '{schedule.fhir_id}' starts at {iso(start)}; "
        "search Slot?schedule=... for the slots on offer.",
        expression=[_START],
    )


def _windows_containing(
    *, organization: Organization, schedule: Schedule, instant: datetime
) -> list[tuple[datetime, datetime]]:
    if not schedule.is_recurring:
        if schedule.planning_start <= instant < schedule.planning_end:
            return [(schedule.planning_start, schedule.planning_end)]
        return []
    periods = recurrence.expand(
        rrule=schedule.rrule,
        first_start=schedule.planning_start,
        first_end=schedule.planning_end,
        tzid=schedule.rule_timezone(organization),
        exdates=schedule.exdate_values(),
        window_start=instant,
        window_end=instant + timedelta(microseconds=1),
    )
    return [(p.start, p.end) for p in periods]


def _require_free(
    *, organization: Organization, schedule: Schedule, start: datetime, end: datetime
) -> None:
    overlapping = Q(start__lt=end, end__gt=start)
    taken = Appointment.objects.filter(
        overlapping, organization=organization, schedule=schedule
    ).exclude(status__in=INACTIVE_APPOINTMENT_STATUSES)
    blocked = Slot.objects.filter(
        overlapping,
        organization=organization,
        schedule=schedule,
        status=SlotStatus.BUSY_UNAVAILABLE,
    )
    # Both checks in one statement: one round trip, inside the lock on the booking path.
    flags = (
        Organization.objects.filter(pk=organization.pk)
        .annotate(taken=Exists(taken), blocked=Exists(blocked))
        .values_list("taken", "blocked")
        .first()
    )
    if flags is not None and any(flags):
        raise SlotTaken(
            f"The slot at {iso(start)} of schedule '{schedule.fhir_id}' is no longer free; "
            "choose another slot.",
            expression=[_START],
        )


def _request_hash(
    *, schedule_id: str, start: datetime, practitioner_role_id: str, status: str, comment: str
) -> str:
    canonical = json.dumps(
        [schedule_id, iso(start), practitioner_role_id, status, comment or ""],
        separators=(",", ":"),
    )
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
            "This Idempotency-Key was already used for a different booking request; "
            "use a new key for a new request.",
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
