"""Domain rows -> FHIR R4 JSON dicts (plain dicts: encoding them is cheap).

Used by the API and by ``export_fhir``; the names are a shared interface. Instants are
written as UTC ``isoformat()`` with seconds precision ("2026-06-01T07:00:00+00:00").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from fhir_api.booking_rules import booking_rules_extension
from scheduling import recurrence
from scheduling.models import (
    Appointment,
    AppointmentResponse,
    Patient,
    Practitioner,
    PractitionerRole,
    Schedule,
    Slot,
)
from scheduling.selectors.appointments import HOLD_EXPIRED_REASON
from scheduling.selectors.slots import PageSlot

EXT_RECURRENCE = "urn:extension:recurrence"
EXT_PARENT_SCHEDULE = "urn:extension:parent:schedule"
EXT_PARENT_APPOINTMENT = "urn:extension:parent:appointment"
EXT_SLOT_DURATION = "urn:extension:slot-duration"
EXT_HELD_UNTIL = "urn:extension:held-until"
UCUM = "http://unitsofmeasure.org"

FHIRDict = dict[str, Any]


class Reference(TypedDict):
    reference: str
    display: NotRequired[str]


class Coding(TypedDict, total=False):
    system: str
    code: str
    display: str


class CodeableConcept(TypedDict, total=False):
    coding: list[Coding]
    text: str


def instant(value: datetime) -> str:
    """An aware datetime as UTC ISO 8601 with an explicit offset, seconds precision."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


@lru_cache(maxsize=65_536)
def instant_at(seconds: int) -> str:
    """:func:`instant` of whole epoch seconds; a page's slots share their starts and ends,
    and each is formatted once per process."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@lru_cache(maxsize=1024)
def _concepts_of_text(text: str | None) -> list[CodeableConcept]:
    # A schedule's categories as stored JSON text, shared by its slots: read only (the
    # resources that hold the list are themselves shared by cached searches).
    return concepts(json.loads(text)) if text else []


def _meta(obj: Any, *, versioned: bool = True) -> dict[str, str]:
    """``meta`` of a stored row: ``versionId`` (the trigger-kept ``version``; see
    ``docs/api.md`` section 15) and ``lastUpdated``.

    A row built from selected columns may lack ``version`` (it is then the unsaved
    ``DatabaseDefault``): it is left out rather than guessed. Generated occurrences pass
    ``versioned=False``: they are not stored, so they have no version of their own.
    """
    meta: dict[str, str] = {}
    version = getattr(obj, "version", None)
    if versioned and isinstance(version, int):
        meta["versionId"] = str(version)
    if getattr(obj, "updated_at", None):
        meta["lastUpdated"] = instant(obj.updated_at)
    return meta


def version_id(resource: FHIRDict) -> str | None:
    """The ``meta.versionId`` of a mapped resource, for the ETag of a read."""
    meta = resource.get("meta")
    return meta.get("versionId") if isinstance(meta, dict) else None


def concepts(values: Any) -> list[CodeableConcept]:
    """Stored [{system, code, display}] -> one CodeableConcept per coding."""
    out: list[CodeableConcept] = []
    for item in values or []:
        if not isinstance(item, dict):
            continue
        coding: Coding = {}
        for key in ("system", "code", "display"):
            if item.get(key):
                coding[key] = str(item[key])  # type: ignore[literal-required,unused-ignore]
        if coding:
            out.append({"coding": [coding]})
    return out


def _recurrence_extension(obj: Any, organization_timezone: str) -> FHIRDict:
    inner: list[FHIRDict] = [
        {"url": "rrule", "valueString": obj.rrule},
        {"url": "timezone", "valueCode": obj.recurrence_timezone or organization_timezone},
    ]
    for value in obj.exdates or []:
        parsed = datetime.fromisoformat(value)
        inner.append({"url": "exdate", "valueDateTime": parsed.isoformat()})
    return {"url": EXT_RECURRENCE, "extension": inner}


def _org_timezone(obj: Any) -> str:
    # organization is nearly always select_related; fall back to the default zone only
    # when the row is unsaved.
    organization = getattr(obj, "organization", None)
    return organization.timezone if organization is not None else "Europe/Amsterdam"


def _put(resource: FHIRDict, key: str, value: Any) -> None:
    if value not in (None, "", [], {}):
        resource[key] = value


def patient_to_fhir(p: Patient) -> FHIRDict:
    """Patient: name, gender, birthDate, telecom, active."""
    resource: FHIRDict = {"resourceType": "Patient", "id": p.fhir_id, "meta": _meta(p)}
    name: FHIRDict = {}
    _put(name, "family", p.family)
    _put(name, "given", p.given.split() if p.given else [])
    if name:
        resource["name"] = [name]
    _put(resource, "gender", p.gender)
    if p.birth_date:
        resource["birthDate"] = p.birth_date.isoformat()
    telecom = []
    if p.email:
        telecom.append({"system": "email", "value": p.email})
    if p.phone:
        telecom.append({"system": "phone", "value": p.phone})
    _put(resource, "telecom", telecom)
    resource["active"] = p.active
    return _drop_empty_meta(resource)


def practitioner_to_fhir(p: Practitioner) -> FHIRDict:
    """Practitioner: name (with prefix), active."""
    resource: FHIRDict = {"resourceType": "Practitioner", "id": p.fhir_id, "meta": _meta(p)}
    name: FHIRDict = {}
    _put(name, "family", p.family)
    _put(name, "given", p.given.split() if p.given else [])
    _put(name, "prefix", [p.prefix] if p.prefix else [])
    if name:
        resource["name"] = [name]
    resource["active"] = p.active
    return _drop_empty_meta(resource)


def practitioner_role_to_fhir(r: PractitionerRole) -> FHIRDict:
    """PractitionerRole: practitioner reference, code, specialty, active."""
    resource: FHIRDict = {"resourceType": "PractitionerRole", "id": r.fhir_id, "meta": _meta(r)}
    if r.practitioner_id and (practitioner := r.practitioner) is not None:
        ref: FHIRDict = {"reference": f"Practitioner/{practitioner.fhir_id}"}
        _put(ref, "display", practitioner.display)
        resource["practitioner"] = ref
    _put(resource, "code", concepts(r.code))
    _put(resource, "specialty", concepts(r.specialty))
    resource["active"] = r.active
    return _drop_empty_meta(resource)


def _drop_empty_meta(resource: FHIRDict) -> FHIRDict:
    if not resource.get("meta"):
        resource.pop("meta", None)
    return resource


def _schedule_actors(s: Schedule) -> list[Reference]:
    actors: list[Reference] = []
    if s.practitioner_role_id and (role := s.practitioner_role) is not None:
        ref: Reference = {"reference": f"PractitionerRole/{role.fhir_id}"}
        label = str(role)
        if label and label != role.fhir_id:
            ref["display"] = label
        actors.append(ref)
    if s.practitioner_id and (prac := s.practitioner) is not None:
        pref: Reference = {"reference": f"Practitioner/{prac.fhir_id}"}
        if prac.display:
            pref["display"] = prac.display
        actors.append(pref)
    return actors


def slot_duration_extension(minutes: int) -> FHIRDict:
    return {
        "url": EXT_SLOT_DURATION,
        "valueDuration": {"value": minutes, "unit": "min", "system": UCUM, "code": "min"},
    }


#: Per-request memo of :func:`_schedule_parts`, keyed by the schedule's primary key.
ScheduleParts = dict[int, tuple[FHIRDict, FHIRDict]]


def _schedule_parts(
    s: Schedule, memo: ScheduleParts | None, *, versioned: bool = False
) -> tuple[FHIRDict, FHIRDict]:
    """The elements of a schedule before and after ``planningHorizon``.

    A week of a daily schedule is seven occurrences with the same actors, codes and meta:
    with a ``memo`` (one per response, so an edited row is never served stale) they are
    mapped once and shared; the rendered JSON is the same as mapping each.
    """
    if memo is not None and s.pk in memo:
        return memo[s.pk]
    head: FHIRDict = {"meta": _meta(s, versioned=versioned)}
    head["active"] = s.active
    _put(head, "serviceCategory", concepts(s.service_category))
    _put(head, "serviceType", concepts(s.service_type))
    _put(head, "specialty", concepts(s.specialty))
    actors = _schedule_actors(s)
    # FHIR requires at least one actor; a schedule without one still must validate.
    head["actor"] = actors or [{"display": "unassigned"}]
    _drop_empty_meta(head)
    tail: FHIRDict = {}
    _put(tail, "comment", s.comment)
    if memo is not None:
        memo[s.pk] = (head, tail)
    return head, tail


def _schedule_base(
    s: Schedule,
    start: datetime,
    end: datetime,
    fhir_id: str,
    memo: ScheduleParts | None = None,
    *,
    versioned: bool = False,
) -> FHIRDict:
    head, tail = _schedule_parts(s, memo, versioned=versioned)
    resource: FHIRDict = {"resourceType": "Schedule", "id": fhir_id, **head}
    resource["planningHorizon"] = {"start": instant(start), "end": instant(end)}
    resource.update(tail)
    return resource


def schedule_to_fhir(s: Schedule) -> FHIRDict:
    """A stored Schedule, recurring ones with their recurrence extension."""
    resource = _schedule_base(s, s.planning_start, s.planning_end, s.fhir_id, versioned=True)
    extensions: list[FHIRDict] = []
    if s.rrule:
        extensions.append(_recurrence_extension(s, _org_timezone(s)))
    if s.slot_minutes:
        extensions.append(slot_duration_extension(s.slot_minutes))
    if (rules := booking_rules_extension(s)) is not None:
        extensions.append(rules)
    if extensions:
        resource["extension"] = extensions
    return resource


def schedule_occurrence_to_fhir(
    s: Schedule, period: recurrence.Period, *, memo: ScheduleParts | None = None
) -> FHIRDict:
    """A generated occurrence of a recurring Schedule (search-only, docs/api.md section 4).

    ``memo``: one dict per response lets the occurrences of a schedule share its parts.
    """
    resource = _schedule_base(
        s, period.start, period.end, recurrence.occurrence_id(s.fhir_id, period.start), memo
    )
    extensions: list[FHIRDict] = [
        {"url": EXT_PARENT_SCHEDULE, "valueReference": {"reference": f"Schedule/{s.fhir_id}"}}
    ]
    if s.slot_minutes:
        extensions.append(slot_duration_extension(s.slot_minutes))
    if (rules := booking_rules_extension(s)) is not None:
        extensions.append(rules)
    resource["extension"] = extensions
    return resource


def slot_to_fhir(slot: Slot) -> FHIRDict:
    """A stored Slot."""
    resource: FHIRDict = {"resourceType": "Slot", "id": slot.fhir_id, "meta": _meta(slot)}
    resource["schedule"] = {"reference": f"Schedule/{slot.schedule.fhir_id}"}
    resource["status"] = slot.status
    resource["start"] = instant(slot.start)
    resource["end"] = instant(slot.end)
    _put(resource, "serviceCategory", concepts(slot.service_category))
    if slot.overbooked:
        resource["overbooked"] = True
    _put(resource, "comment", slot.comment)
    return _drop_empty_meta(resource)


def page_slot_to_fhir(slot: PageSlot) -> FHIRDict:
    """A slot of a search page as plain values: the resource :func:`slot_to_fhir` (stored)
    or :func:`generated_slot_to_fhir` (generated) makes of the same slot."""
    resource: FHIRDict = {"resourceType": "Slot", "id": slot.id}
    stored = slot.stored
    if stored is not None:
        _, _, updated_at, version = stored
        # (both columns are NOT NULL: the meta of a stored slot is never empty)
        resource["meta"] = {"versionId": str(version), "lastUpdated": instant_at(updated_at)}
    resource["schedule"] = {"reference": f"Schedule/{slot.schedule_id}"}
    resource["status"] = str(slot.status)
    resource["start"] = instant_at(slot.start)
    resource["end"] = instant_at(slot.end)
    categories = _concepts_of_text(slot.categories)
    if categories:
        resource["serviceCategory"] = categories
    if stored is not None:
        if stored[0]:  # overbooked
            resource["overbooked"] = True
        if stored[1]:  # comment
            resource["comment"] = stored[1]
    return resource


def generated_slot_to_fhir(schedule: Schedule, generated_slot: Any) -> FHIRDict:
    """A slot cut from a schedule's availability (never stored)."""
    start: datetime = generated_slot.start
    end: datetime = generated_slot.end
    status = getattr(generated_slot, "status", "free")
    slot_id = getattr(generated_slot, "id", None) or recurrence.occurrence_id(
        schedule.fhir_id, start
    )
    resource: FHIRDict = {
        "resourceType": "Slot",
        "id": slot_id,
        "schedule": {"reference": f"Schedule/{schedule.fhir_id}"},
        "status": str(status),
        "start": instant(start),
        "end": instant(end),
    }
    _put(resource, "serviceCategory", concepts(schedule.service_category))
    return resource


def _appointment_base(
    a: Appointment, start: datetime, end: datetime, fhir_id: str, *, lapsed: bool = False
) -> FHIRDict:
    # An occurrence's id differs from its parent's: only the stored row has a version.
    meta = _meta(a, versioned=fhir_id == a.fhir_id)
    if lapsed and "versionId" in meta:
        # A hold lapses without its row changing: its version must change all the same, or
        # an If-None-Match read would answer 304 to a client that last saw it pending.
        meta["versionId"] += "-lapsed"
    resource: FHIRDict = {"resourceType": "Appointment", "id": fhir_id, "meta": meta}
    # A lapsed hold reads as cancelled from the instant it lapses, tidied or not.
    resource["status"] = "cancelled" if lapsed else a.status
    reason = HOLD_EXPIRED_REASON if lapsed else a.cancelation_reason
    if reason:
        resource["cancelationReason"] = {"text": reason}
    _put(resource, "serviceCategory", concepts(a.service_category))
    _put(resource, "description", a.description)
    resource["start"] = instant(start)
    resource["end"] = instant(end)
    if a.slot_id and fhir_id == a.fhir_id and (slot := a.slot) is not None:
        resource["slot"] = [{"reference": f"Slot/{slot.fhir_id}"}]
    _put(resource, "comment", a.comment)
    participants: list[FHIRDict] = []
    patient_ref: FHIRDict = {"reference": f"Patient/{a.patient.fhir_id}"}
    if a.patient.display:
        patient_ref["display"] = a.patient.display
    participants.append({"actor": patient_ref, "required": "required", "status": a.patient_status})
    if a.practitioner_role_id and (role := a.practitioner_role) is not None:
        role_ref: FHIRDict = {"reference": f"PractitionerRole/{role.fhir_id}"}
        participants.append(
            {"actor": role_ref, "required": "required", "status": a.practitioner_status}
        )
    resource["participant"] = participants
    return _drop_empty_meta(resource)


def appointment_to_fhir(a: Appointment, *, now: datetime | None = None) -> FHIRDict:
    """A stored Appointment as it reads at ``now`` (default: the clock): recurring ones with
    their recurrence extension, a live hold with ``held-until``, a lapsed hold cancelled
    ("hold expired")."""
    lapsed = a.hold_lapsed(now or datetime.now(UTC))
    resource = _appointment_base(a, a.start, a.end, a.fhir_id, lapsed=lapsed)
    extensions: list[FHIRDict] = []
    if a.rrule:
        extensions.append(_recurrence_extension(a, _org_timezone(a)))
    if a.is_held and not lapsed and a.held_until is not None:
        extensions.append({"url": EXT_HELD_UNTIL, "valueInstant": instant(a.held_until)})
    if extensions:
        resource["extension"] = extensions
    return resource


def appointment_occurrence_to_fhir(a: Appointment, period: recurrence.Period) -> FHIRDict:
    """A generated occurrence of a recurring Appointment (search-only)."""
    resource = _appointment_base(
        a, period.start, period.end, recurrence.occurrence_id(a.fhir_id, period.start)
    )
    resource["extension"] = [
        {
            "url": EXT_PARENT_APPOINTMENT,
            "valueReference": {"reference": f"Appointment/{a.fhir_id}"},
        }
    ]
    return resource


def appointment_response_to_fhir(r: AppointmentResponse) -> FHIRDict:
    """A stored AppointmentResponse."""
    resource: FHIRDict = {"resourceType": "AppointmentResponse", "id": r.fhir_id, "meta": _meta(r)}
    appointment = r.appointment
    # A response to one occurrence of a recurring appointment keeps that occurrence's
    # period in start/end, and names the occurrence.
    target = (
        recurrence.occurrence_id(appointment.fhir_id, r.start)
        if appointment.rrule and r.start is not None
        else appointment.fhir_id
    )
    resource["appointment"] = {"reference": f"Appointment/{target}"}
    if r.start:
        resource["start"] = instant(r.start)
    if r.end:
        resource["end"] = instant(r.end)
    resource["actor"] = {"reference": f"Patient/{r.patient.fhir_id}"}
    resource["participantStatus"] = r.participant_status
    _put(resource, "comment", r.comment)
    return _drop_empty_meta(resource)
