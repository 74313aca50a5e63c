"""Reads of a patient's appointments: search (recurring ones expanded) and read by id.

A hold whose ``held_until`` has passed reads as cancelled ("hold expired") from that
instant, whether or not the database has been tidied yet (no background job is needed for
a client to see a hold lapse): a search's status filter counts it as cancelled at ``now``,
and the mappers write it so (``Appointment.hold_lapsed(now)``). Rows themselves are
returned as stored, so a read's version (ETag) can tell the two states apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import (
    Q,
    QuerySet,
)

from scheduling import recurrence
from scheduling.db.compiled_query import CompiledModelQuery
from scheduling.errors import NotFound
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Organization,
    Patient,
)
from scheduling.recurrence import Period
from scheduling.selectors.common import (
    expand_rule,
    generated_not_found,
    ids_and_parents,
    utc_now,
    window_q,
)

#: ``cancelationReason.text`` of a hold that lapsed (read so, and written so when tidied).
HOLD_EXPIRED_REASON = "hold expired"


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


def _appointments(organization: Organization, patient: Patient) -> QuerySet[Appointment]:
    return Appointment.objects.filter(organization=organization, patient=patient).select_related(
        "slot", "practitioner_role"
    )


def _bind(appointment: Appointment, organization: Organization, patient: Patient) -> Appointment:
    # Both are already loaded by the tenancy layer: no join and no query per row.
    appointment.organization = organization
    appointment.patient = patient
    return appointment


def lapsed_hold_q(now: datetime) -> Q:
    """Rows that are holds whose time ran out by ``now`` (still ``pending`` in the table)."""
    return Q(status=AppointmentStatus.PENDING, held_until__isnull=False, held_until__lte=now)


def _status_q(statuses: Sequence[str], now: datetime) -> Q:
    """The stored rows that READ with one of ``statuses`` at ``now``."""
    wanted = set(statuses)
    q = Q(status__in=sorted(wanted))
    if AppointmentStatus.PENDING in wanted:
        q &= ~lapsed_hold_q(now)
    if AppointmentStatus.CANCELLED in wanted:
        q |= lapsed_hold_q(now)
    return q


#: (organisation id, patient pk, appointment id): as ``_appointments`` loads it.
_APPOINTMENT_BY_ID = CompiledModelQuery(
    lambda organization_id, patient_pk, fhir_id: (
        Appointment.objects.filter(
            organization_id=organization_id, patient_id=patient_pk, fhir_id=fhir_id
        )
        .select_related("slot", "practitioner_role")
        .order_by()
    ),
    kinds="sis",
)


#: As ``_APPOINTMENT_BY_ID``, with the patient's row joined in; of the related rows only
#: what an Appointment resource shows of them (half the columns to fetch and convert).
_APPOINTMENT_AND_PATIENT_BY_ID = CompiledModelQuery(
    lambda organization_id, patient_pk, fhir_id: (
        Appointment.objects.filter(
            organization_id=organization_id, patient_id=patient_pk, fhir_id=fhir_id
        )
        .select_related("slot", "practitioner_role", "patient")
        .only(
            *(field.name for field in Appointment._meta.concrete_fields),
            "slot__fhir_id",
            "practitioner_role__fhir_id",
            "patient__fhir_id",
            "patient__given",
            "patient__family",
        )
        .order_by()
    ),
    kinds="sis",
)


def appointment_get(*, organization: Organization, patient: Patient, fhir_id: str) -> Appointment:
    """A stored appointment of this patient; NotFound otherwise (also for occurrences)."""
    appointment = _APPOINTMENT_BY_ID.first(organization.pk, patient.pk, fhir_id)
    if appointment is not None:
        return _bind(appointment, organization, patient)
    raise _not_found(organization, patient.pk, fhir_id)


def appointment_read(*, organization: Organization, patient_pk: int, fhir_id: str) -> Appointment:
    """:func:`appointment_get` for a patient known by its primary key alone: its row comes
    joined to the appointment's, in the same query. For mapping the appointment: of its
    slot, practitioner role and patient, only the fields the resource shows are loaded
    (any other loads on access, one query each)."""
    appointment = _APPOINTMENT_AND_PATIENT_BY_ID.first(organization.pk, patient_pk, fhir_id)
    if appointment is not None:
        appointment.organization = organization
        return appointment  # type: ignore[no-any-return]
    raise _not_found(organization, patient_pk, fhir_id)


def _not_found(organization: Organization, patient_pk: int, fhir_id: str) -> NotFound:
    split = recurrence.split_occurrence_id(fhir_id)
    parent_exists = (
        split is not None
        and Appointment.objects.filter(
            organization=organization, patient_id=patient_pk, fhir_id=split[0]
        )
        .exclude(rrule="")
        .exists()
    )
    return generated_not_found("Appointment", fhir_id, parent_exists, split[0] if split else "")


def patient_appointment_search(
    *,
    organization: Organization,
    patient: Patient,
    ids: Sequence[str] | None = None,
    window: Period | None = None,
    statuses: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[AppointmentResult]:
    """The patient's appointments; with a window, recurring ones become their occurrences.
    ``statuses`` match as the appointments read at ``now`` (default: the clock)."""
    now = now or utc_now()
    qs = _appointments(organization, patient)
    wanted: set[str] = set()
    if ids is not None:
        wanted, lookup = ids_and_parents(ids)
        qs = qs.filter(fhir_id__in=lookup if window is not None else wanted)
    if statuses:
        qs = qs.filter(_status_q(statuses, now))
    if window is not None:
        qs = qs.filter(window_q(window, "start", "end"))
    results: list[AppointmentResult] = []
    for appointment in qs:
        _bind(appointment, organization, patient)
        if window is None or not appointment.rrule:
            if ids is None or appointment.fhir_id in wanted:
                results.append(AppointmentResult(appointment))
            continue
        for period in expand_rule(
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
